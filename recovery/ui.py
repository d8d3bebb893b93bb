"""Everything the operator sees: plan tables, live per-host progress, status, in plain text or JSON.

Host-supplied text reaches this module already passed through
:func:`recovery.hostile.for_terminal`; rich markup in it is escaped here too.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from recovery.engine import state
from recovery.engine.plan import Plan, PlannedStep
from recovery.hostile import for_terminal

# Wide enough for the plan table in CI logs and pipes, where rich would assume 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def plain() -> None:
    """No colour or styles on either stream (`--no-color`; rich already honours NO_COLOR)."""
    for stream in (console, errors):
        stream.no_color = True
        stream._color_system = None  # rich decides the colour system once; this is how to take it back

_STYLE = {
    state.DONE: "green", state.FAILED: "bold red", state.SKIPPED: "yellow",
    "started": "cyan", "retrying": "yellow", "note": "blue", state.PENDING: "dim",
    state.IN_FLIGHT: "cyan", "not reached": "yellow",
}


def safe(text: object) -> str:
    """One line of text for the terminal: a newline a host chose never starts a line of ours."""
    return escape(for_terminal(str(text), 2000, newlines=False))


def say(line: str) -> None:
    """A progress line from a long operation (lab build, boots, rehearsal phases)."""
    console.print(safe(line))


def say_aside(line: str) -> None:
    """A progress line on stderr, when stdout carries JSON."""
    errors.print(safe(line))


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    return [
        {"step": p.id, "kind": p.step.kind, "host": h, "description": p.description,
         "confirm": p.step.confirm, "on_failure": p.step.on_failure}
        for p, h in plan.pairs()
    ]


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "target": {"name": plan.target.name, "kind": plan.target.kind,
                   "hosts": list(plan.target.hosts), "services": list(plan.target.services)},
        "destructive": plan.destructive,
        "batches": [[list(b) for b in block.batches] for block in plan.blocks],
        "steps": plan_rows(plan),
        "foreseen": {p.id: dict(p.foreseen) for p in plan.steps if p.foreseen},  # step -> host -> what it will do
    }


def show_plan(plan: Plan) -> None:
    t = plan.target
    console.print(f"Plan for [bold]{safe(t.name)}[/] ({t.kind}: hosts {', '.join(t.hosts) or '-'}"
                  f"{'; services ' + ', '.join(t.services) if t.services else ''})")
    table = Table(show_lines=False)
    for column in ("#", "step", "kind", "hosts (in order)", "what it does", "notes"):
        table.add_column(column)
    for planned in plan.steps:
        hosts = " → ".join(" + ".join(h for h in b if h in planned.hosts) for block in plan.blocks
                           if planned in block.steps for b in block.batches if set(b) & set(planned.hosts))
        notes = []
        if planned.step.confirm:
            notes.append("[yellow]destructive[/]")
        if planned.step.on_failure != "skip-host":
            notes.append(f"on failure: {planned.step.on_failure}")
        table.add_row(str(planned.index + 1), safe(planned.id), planned.step.kind,
                      "once" if planned.scope == "run" else hosts or _no_host(planned),
                      safe(planned.description), ", ".join(notes))
    console.print(table)
    for planned in plan.steps:
        for host, what in planned.foreseen:
            console.print(f"  {safe(planned.id)}: [bold]{safe(host)}[/] — {safe(what)}")


def _no_host(planned: PlannedStep) -> str:
    """A step whose targets name no host of this run is shown as such, not left out."""
    return f"none of this run (targets: {safe(', '.join(planned.step.targets))})"


class LiveProgress:
    """Per-host progress: a line per event (terminal and CI logs alike), plus, on a terminal,
    a live table at the bottom with each host's current step."""

    live_table = True

    def __init__(self, assume_yes: bool) -> None:
        self.assume_yes = assume_yes
        self._lock = threading.RLock()
        self._start = time.monotonic()
        self._hosts: dict[str, tuple[str, str, float]] = {}
        self._live = Live(self._table(), console=console, refresh_per_second=4,
                          transient=True) if self.live_table and console.is_terminal else None

    def __enter__(self) -> "LiveProgress":
        if self._live:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.stop()

    def event(self, step: str, host: str, status: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self._start
        style = _STYLE.get(status, "default")
        line = (f"[dim]{elapsed:7.1f}s[/] {safe(host):<12} {safe(step):<20} "
                f"[{style}]{status:<9}[/] {safe(detail)}")
        with self._lock:
            console.print(line)
            if status != "note":
                self._hosts[host] = (step, status, elapsed)
            if self._live:
                self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title="hosts", title_justify="left")
        for column in ("host", "step", "state", "since"):
            table.add_column(column)
        for host, (step, status, since) in sorted(self._hosts.items()):
            style = _STYLE.get(status, "default")
            table.add_row(safe(host), safe(step), f"[{style}]{status}[/]", f"{since:.1f}s")
        return table

    def acknowledge(self, prompt: str) -> bool:
        if self.assume_yes:
            self.event("approval", "*", "note", f"{prompt}: approved by --yes")
            return True
        with self._lock:
            if not sys.stdin.isatty():
                return False
            if self._live:
                self._live.stop()
            answer = console.input(f"[yellow]approval[/] {safe(prompt)} — type 'yes' to approve: ")
            if self._live:
                self._live.start()
            return answer.strip().lower() == "yes"


class JsonProgress(LiveProgress):
    """One JSON object per line on stdout, for automation (`--json`)."""

    live_table = False

    def event(self, step: str, host: str, status: str, detail: str = "") -> None:
        record = {"t": round(time.monotonic() - self._start, 3), "host": host, "step": step,
                  "status": status, "detail": for_terminal(detail, 2000)}  # masks secrets before it cuts
        with self._lock:
            print(json.dumps(record), flush=True)


def status_rows(plan: Plan, pairs: dict[tuple[str, str], state.PairState]) -> list[dict[str, Any]]:
    rows = []
    for planned, host in plan.pairs():
        pair = pairs.get((planned.id, host), state.PairState())
        duration = (pair.finished - pair.started) if pair.started and pair.finished else None
        rows.append({"step": planned.id, "host": host, "state": pair.state,
                     "attempts": pair.attempts, "error": pair.error,
                     "needs_operator": pair.needs_operator,
                     "duration": round(duration, 3) if duration is not None else None})
    return rows


def show_status(run_id: str, target: str, run_status: str | None, rows: list[dict[str, Any]]) -> None:
    console.print(f"Run [bold]{run_id}[/] — target {safe(target)} — "
                  f"{run_status or 'not finished (resume it with `recover resume ' + run_id + '`)'}")
    table = Table()
    for column in ("step", "host", "state", "attempts", "seconds", "error"):
        table.add_column(column)
    for row in rows:
        style = _STYLE.get(row["state"], "")
        table.add_row(safe(row["step"]), safe(row["host"]), f"[{style}]{row['state']}[/]",
                      str(row["attempts"]), "" if row["duration"] is None else f"{row['duration']:.2f}",
                      safe(row["error"] or ""))
    console.print(table)


def show_rehearsal(result: Any) -> None:
    """PASS/FAIL per check, then the time of each phase and the recovery's RTO."""
    console.print(f"\nRehearsal of [bold]{safe(result.target)}[/] ({result.scenario}), run {result.run_id}")
    for check in result.checks:
        mark = "[green]PASS[/]" if check.passed else "[bold red]FAIL[/]"
        console.print(f"  {mark} {safe(check.name)} — {safe(check.detail)}")
    table = Table(title="time per phase (s)", title_justify="left")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in {**result.timings, **{f"  {k}": v for k, v in result.phases.items()}}.items():
        table.add_row(safe(name), f"{seconds:.1f}")
    console.print(table)
    console.print(f"orchestrator CPU during the recovery: {result.cpu.get('recover', 0):.1f} s "
                  f"({result.overhead_share:.1%} of the run; the rest is waiting on guests, BMCs and servers)")
    rto = f"{result.rto:.1f} s" if result.rto is not None else "traffic not back on a recovered host"
    console.print(f"RTO (start of the recovery to traffic back): {rto}; the whole run, evidence copied: "
                  f"{result.timings.get('recover', 0):.1f} s — "
                  + ("[green]all checks passed[/]" if result.passed else "[bold red]some checks failed[/]"))


_CHECK_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}


def show_check(report: Any) -> None:
    """`recover check`: one table per host or service (item, status, what was found, the fix), then a summary."""
    for subject in report.subjects:
        table = Table(title=f"{subject.kind} {escape(subject.name)}", title_justify="left")
        for column in ("item", "status", "found", "fix"):
            table.add_column(column, overflow="fold")
        for item in subject.items:
            style = _CHECK_STYLE[item.status.value]
            table.add_row(item.name, f"[{style}]{item.status.value}[/]", safe(item.detail), safe(item.fix))
        console.print(table)
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in type(report.status))
    style = _CHECK_STYLE[report.status.value]
    console.print(f"check {escape(report.target)}: [{style}]{report.status.value}[/] — {counts}")
