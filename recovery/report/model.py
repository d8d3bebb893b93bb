"""What an incident report says, gathered from a run's journal (and nothing else).

The journal is already redacted, so no secret can reach a report through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from recovery.engine import registry, state
from recovery.engine.journal import Record
from recovery.engine.plan import RUN_SCOPE, Plan
from recovery.steps.boot import BootSingleOutputs
from recovery.steps.diff import DiffOutputs
from recovery.steps.find_clean import FindCleanOutputs
from recovery.steps.preserve import PreserveOutputs
from recovery.steps.restore import RestoreOutputs
from recovery.steps.sweep import SweepOutputs
from recovery.steps.traffic import ReturnOutputs, TrafficOutputs


@dataclass(frozen=True)
class Bar:
    """One step on one host, for the timeline picture; ``state`` is done, failed or unfinished."""

    host: str
    step: str
    start: float
    end: float
    state: str


@dataclass
class Report:
    run_id: str
    target: str
    status: str
    started: float
    finished: float | None
    journal_head: str
    journal_intact: bool
    #: When `return` put at least one host back: the recovery time (RTO) ends here, not when the
    #: evidence copied after it is in and the run finishes.
    traffic_back: float | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # host -> "restored" / "failed: ..." / ...
    bars: list[Bar] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # step -> seconds (first start to last end)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    restored: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    swept: list[dict[str, Any]] = field(default_factory=list)  # the sweep of the service's other hosts
    rotation: list[dict[str, Any]] = field(default_factory=list)  # `return`'s decision about each host
    failures: list[str] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)  # what it means that steps never ran (traffic!)
    recommendations: list[str] = field(default_factory=list)
    # step kind -> the hosts (RUN_SCOPE for once per run) it finished on, and those the plan had it on where it
    # did not: an empty table then says "not run" instead of "none found".
    ran: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    collectors: list[dict[str, Any]] = field(default_factory=list)  # what each off-host collector received

    @property
    def rto(self) -> float | None:
        """Seconds from the start to traffic back on recovered hosts; None while it is not back."""
        return self.traffic_back - self.started if self.traffic_back is not None else None

    @property
    def run_time(self) -> float | None:
        """Seconds from the start to the run's end (evidence copied, everything journaled)."""
        return self.finished - self.started if self.finished is not None else None


def build(run_id: str, target: str, plan: Plan, records: list[Record], problems: list[str]) -> Report:
    pairs = state.fold(records)
    report = Report(run_id, target, state.run_status(records) or "unfinished",
                    records[0].ts if records else 0.0,
                    _finished(records),
                    records[-1].hash if records else "", not problems)
    report.bars = _bars(records)
    report.phases = _spans(report.bars)
    report.timeline = [(r.ts, _narrate(r)) for r in records if _narrate(r)]
    for (step_id, host), pair in sorted(pairs.items()):
        kind = next((p.step.kind for p in plan.steps if p.id == step_id), step_id)
        _collect(report, kind, host, pair)
    report.hosts = _host_status(plan, pairs)
    report.hosts.update({r["host"]: _beside(r) for r in report.rotation if r["host"] not in report.hosts})
    report.unreached = [f"{r.step}: {r.data.get('meaning', '')}" for r in records if r.event == "step_unreached"]
    report.ran, report.missing = _coverage(plan, pairs)
    report.collectors = [r.data for r in records if r.event == "collector_delivery"]
    report.traffic_back = traffic_back(plan, records)
    return report


def traffic_back(plan: Plan, records: list[Record]) -> float | None:
    """When the first `return` that put a target of the run back into rotation finished, if one did
    (a later `return`, for the hosts beside it once they are swept, does not move it)."""
    returns = {p.id for p in plan.steps if p.step.kind == "return"}
    for r in records:
        if r.event == "step_succeeded" and r.step in returns and _admitted_any(r.data.get("outputs"),
                                                                                plan.target.hosts):
            return r.ts
    return None


def _admitted_any(outputs: Any, hosts: tuple[str, ...]) -> bool:
    try:
        decisions = ReturnOutputs.model_validate(outputs or {}).hosts
    except ValidationError:
        return False
    return any(d.admitted for h, d in decisions.items() if h in hosts)


def _finished(records: list[Record]) -> float | None:
    """When the run last finished, unless it was resumed since (what the collectors said after it does not count)."""
    finished = None
    for r in records:
        if r.event == "run_finished":
            finished = r.ts
        elif r.event in ("run_started", "run_resumed"):
            finished = None
    return finished


def run_order(plan: Plan) -> list[str]:
    """The target's hosts in the order the plan takes them (priority groups, batches), not by name."""
    order = [h for block in plan.blocks for batch in block.batches for h in batch if h != RUN_SCOPE]
    order += list(plan.target.hosts)
    return list(dict.fromkeys(order))


def _coverage(plan: Plan, pairs: dict[tuple[str, str], state.PairState]) -> tuple[dict[str, list[str]],
                                                                                  dict[str, list[str]]]:
    """Per step kind, where it finished and where the plan had it but it did not (failed, skipped, never reached)."""
    ran: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for planned, host in plan.pairs():
        done = pairs.get((planned.id, host), state.PairState()).state == state.DONE
        (ran if done else missing).setdefault(planned.step.kind, []).append(host)
    return ran, missing


def _bars(records: list[Record]) -> list[Bar]:
    """Each attempt of a step on a host; one still open when the journal ends (a crash) ends with it, unfinished."""
    open_: dict[tuple[str, str], float] = {}
    bars = []
    for r in records:
        if r.step is None or r.host is None:
            continue
        if r.event == "step_started":
            open_[(r.step, r.host)] = r.ts
        elif r.event in ("step_succeeded", "step_failed") and (r.step, r.host) in open_:
            bars.append(Bar(r.host, r.step, open_.pop((r.step, r.host)), r.ts,
                            "done" if r.event == "step_succeeded" else "failed"))
    end = records[-1].ts if records else 0.0
    bars += [Bar(host, step, start, end, "unfinished") for (step, host), start in open_.items()]
    return sorted(bars, key=lambda b: b.start)


def phases(records: list[Record]) -> dict[str, float]:
    """Seconds per step, from its first start on any host to its last end (the RTO of each phase)."""
    return _spans(_bars(records))


def _spans(bars: list[Bar]) -> dict[str, float]:
    spans: dict[str, tuple[float, float]] = {}
    for bar in bars:
        start, end = spans.get(bar.step, (bar.start, bar.end))
        spans[bar.step] = (min(start, bar.start), max(end, bar.end))
    return {step: round(end - start, 3) for step, (start, end) in spans.items()}


#: How the timeline tells each kind of journal record: (record, "host " or "") -> a line.
_NARRATION: dict[str, Callable[[Record, str], str]] = {
    "run_started": lambda r, _: f"run started by {r.data.get('operator', '?')} for {r.data.get('target', '?')}",
    "run_resumed": lambda r, _: f"run resumed by {r.data.get('operator', '?')} for {r.data.get('target', '?')}",
    "step_succeeded": lambda r, where: f"{where}{r.step} done",
    "step_failed": lambda r, where: f"{where}{r.step} FAILED: {r.data.get('error', '')}",
    "step_skipped": lambda r, where: f"{where}{r.step} skipped by the operator",
    "step_retrying": lambda r, where: f"{where}{r.step} retrying after: {r.data.get('error', '')}",
    "step_unreached": lambda r, _: f"{r.step} not reached: {r.data.get('meaning', '')}",
    "channel_changed": lambda r, where: f"{where}now reached over {r.data.get('channel')}",
    "host_admitted": lambda r, where: (f"{where}admitted into rotation by {r.data.get('operator', '?')}: "
                                       f"{r.data.get('why', '')}"),
    "run_defect": lambda r, _: f"run stopped by an internal error: {r.data.get('error', '')}",
    "run_finished": lambda r, _: f"run finished: {r.data.get('status')}",
    # the off-host copy: a collector lost and found again, and what it received
    "collector_unreachable": lambda r, _: (f"collector {r.data.get('collector')} unreachable ({r.data.get('error')}): "
                                           "records queued and retried"),
    "collector_reachable": lambda r, _: (f"collector {r.data.get('collector')} reachable again "
                                         f"({r.data.get('dropped')} dropped so far)"),
    "collector_delivery": lambda r, _: (f"collector {r.data.get('collector')}: {r.data.get('delivered')} records "
                                        f"delivered, {r.data.get('dropped')} dropped, {r.data.get('pending')} "
                                        "still queued at the end"),
}


def _narrate(r: Record) -> str:
    tell = _NARRATION.get(r.event)
    return tell(r, f"{r.host} " if r.host and r.host != "*" else "") if tell else ""


def _collect(report: Report, kind: str, host: str, pair: state.PairState) -> None:
    if pair.state == state.FAILED:
        report.failures.append(f"{host}: {pair.error}")
    step_kind = registry.get(kind)
    if pair.state != state.DONE or step_kind is None:
        return
    try:
        out = step_kind.Outputs.model_validate(pair.outputs)
    except ValidationError:
        report.failures.append(f"{host}: the journaled result of a `{kind}` step has the wrong shape")
        return
    if isinstance(out, DiffOutputs):
        for dataset, found in out.datasets.items():
            report.indicators += [{"host": host, "dataset": dataset, "found_by": "diff", **f.model_dump()}
                                  for f in found.findings if f.verdict == "indicator"]
    elif isinstance(out, SweepOutputs):
        _collect_sweep(report, out)
    elif isinstance(out, FindCleanOutputs):
        for dataset, chosen in out.datasets.items():
            lost = chosen.lost.benign if chosen.lost else []
            report.lost += [{"host": host, "dataset": dataset, **f.model_dump()} for f in lost]
    elif isinstance(out, RestoreOutputs):
        report.restored += [{"host": host, "dataset": d, **r.model_dump()} for d, r in out.datasets.items()]
    elif isinstance(out, PreserveOutputs):
        report.evidence += [{"host": host, "snapshot": s, **e.model_dump()} for s, e in out.snapshots.items()]
    elif isinstance(out, BootSingleOutputs) and out.mode == "single-user":
        report.recommendations.append(
            f"{host}: rotate the console credential (hosts.{host}.root_password): it was typed into the "
            "compromised host's own sulogin in single-user mode, where its own binaries ran")
    elif isinstance(out, TrafficOutputs):
        report.traffic += [{"step": kind, "channel": c, **r.model_dump()} for c, r in out.channels.items()]
        if isinstance(out, ReturnOutputs):
            report.rotation = [{"host": h, **d.model_dump()} for h, d in out.hosts.items()]


def _collect_sweep(report: Report, out: SweepOutputs) -> None:
    """Each swept host's verdict, and its indicators among the run's (found on the live system);
    a restored target's second look is listed with what it was compared against."""
    looks = [(host, swept, "sweep (live)", "") for host, swept in out.hosts.items()]
    looks += [(host, swept, "second look since the restore (live)", " (since its restore)")
              for host, swept in out.restored.items()]
    for host, swept, found_by, since in looks:
        report.swept.append({"host": host + since, **swept.model_dump(exclude={"datasets"})})
        for dataset, found in swept.datasets.items():
            report.indicators += [{"host": host, "dataset": dataset, "found_by": found_by, **f.model_dump()}
                                  for f in found.findings if f.verdict == "indicator"]


def _beside(decision: dict[str, Any]) -> str:
    """The outcome of a host beside the target: back in rotation or kept out, and why."""
    if decision["admitted"]:
        return f"not a target; back in rotation: {decision['reason']}"
    return f"not a target; kept out: {decision['reason']}; to recover it: {decision['command']}"


def _host_status(plan: Plan, pairs: dict[tuple[str, str], state.PairState]) -> dict[str, str]:
    """Each target host's outcome, in run order."""
    status = {}
    for host in run_order(plan):
        mine = [(p.id, pairs.get((p.id, host))) for p in plan.steps if p.scope == "host" and host in p.hosts]
        failed = [(s, p) for s, p in mine if p and p.state == state.FAILED]
        if failed:
            status[host] = f"failed at {failed[0][0]}: {failed[0][1].error}"
        elif all(p and p.state in (state.DONE, state.SKIPPED) for _, p in mine):
            status[host] = "recovered"
        else:
            status[host] = "not finished"
    return status
