"""The report's sections as tables, shared by the Markdown and the HTML renderings.

One place decides what each section holds, in which order, and what an empty
table means: a step that found nothing ("none found") is not a step that
never ran ("not run"), and a reader must be able to tell them apart. Values
stay raw here; each rendering makes them inert for its own format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from recovery.engine.plan import RUN_SCOPE
from recovery.report.model import Report
from recovery.steps.sweep import CAVEAT


@dataclass(frozen=True)
class Strong:
    """A cell a reader must not miss (a host kept out of rotation)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Table:
    """A titled table; ``lead`` opens the section, ``empty`` is said instead of a table without rows,
    ``notes`` follow it either way."""

    anchor: str
    title: str
    headers: tuple[str, ...]
    rows: list[list[object]]
    empty: str
    notes: tuple[str, ...] = ()
    lead: str = ""
    bad_rows: frozenset[int] = frozenset()  # rows about a failure, for emphasis


def when(ts: float | None) -> str:
    """A journal time as people write it in a post-mortem (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def failed(outcome: str) -> bool:
    return outcome.startswith("failed") or "kept out" in outcome


def hosts(report: Report) -> Table:
    """Hosts that failed first, then the rest, each group in run order."""
    ordered = sorted(report.hosts.items(), key=lambda item: not failed(item[1]))
    return Table("hosts", "Hosts", ("host", "outcome"), [[h, s] for h, s in ordered], "No host was part of this run.",
                 bad_rows=frozenset(i for i, (_, s) in enumerate(ordered) if failed(s)))


def findings(report: Report) -> list[Table]:
    """What the run found and did on the hosts: indicators, restores, what a restore gave up, evidence."""
    return [
        Table("indicators", "Indicators of compromise",
              ("host", "dataset", "path", "change", "rule", "ctime", "found by"),
              [[i["host"], i["dataset"], i["path"], i["change"], i.get("rule"), i.get("ctime"), i.get("found_by")]
               for i in report.indicators], *_coverage(report, ("diff", "sweep"), "None found.")),
        Table("restored", "What was restored",
              ("host", "dataset", "restored from", "compromised state kept as", "evidence"),
              [[r["host"], r["dataset"], r.get("clean"), r.get("quarantine"), r.get("evidence")]
               for r in report.restored], *_coverage(report, ("restore",), "Nothing needed restoring.")),
        Table("lost", "Changes made after the clean snapshot (to salvage from the quarantine)",
              ("host", "dataset", "path", "change"),
              [[c["host"], c["dataset"], c["path"], c["change"]] for c in report.lost],
              *_coverage(report, ("find_clean",), "None: nothing legitimate was given up.")),
        Table("evidence", "Evidence (chain of custody)",
              ("host", "snapshot", "guid", "bytes", "sha256", "an increment of (receive its stream first)"),
              [[e["host"], e["snapshot"], e.get("guid"), e.get("bytes", "-"), e.get("sha256", "-"), _base(e)]
               for e in report.evidence], *_coverage(report, ("preserve",), "No evidence was taken.")),
    ]


def traffic(report: Report) -> list[Table]:
    """Where traffic went, who came back into rotation and why, and the sweep that decided it."""
    tables = [
        Table("traffic", "Traffic",
              ("step", "channel", "before", "after", "foreign destinations (indicator)", "kept out"),
              [[t["step"], t["channel"], _routes(t["before"]), _routes(t["after"]),
                ", ".join(t.get("foreign", [])) or "-", ", ".join(t.get("kept_out", [])) or "-"]
               for t in report.traffic],
              *_coverage(report, ("divert", "return"), "No traffic was moved.")),
        Table("rotation", "Back in rotation", ("host", "in rotation", "why", "to recover it"),
              [[r["host"], "yes" if r["admitted"] else Strong("KEPT OUT"), r["reason"], r.get("command") or "-"]
               for r in report.rotation], *_coverage(report, ("return",), "No host was returned."),
              bad_rows=frozenset(i for i, r in enumerate(report.rotation) if not r["admitted"])),
    ]
    if report.swept:
        tables.append(Table("sweep", "Sweep of the service's other hosts (and a second look at restored targets)",
                            ("host", "verdict", "indicators", "why", "golden manifest"),
                            [[s["host"], s["verdict"], s["indicators"], s.get("reason") or "-",
                              s.get("golden") or "-"] for s in report.swept], "",
                            lead=f"{CAVEAT[:1].upper() + CAVEAT[1:]}."))
    return tables


def phases(report: Report) -> Table:
    return Table("phases", "Time per phase", ("step", "seconds"),
                 [[s, f"{d:.2f}"] for s, d in report.phases.items()], "No step ran.")


def collectors(report: Report) -> Table:
    """What each off-host collector received: an incomplete off-host copy is said, not hidden."""
    return Table("collectors", "Off-host copies (syslog and webhooks)",
                 ("collector", "delivered", "dropped", "still queued at the end"),
                 [[c.get("collector"), c.get("delivered"), c.get("dropped"), c.get("pending")]
                  for c in report.collectors], "No collector is configured: the journal stayed on this machine.",
                 bad_rows=frozenset(i for i, c in enumerate(report.collectors)
                                    if c.get("dropped") or c.get("pending")))


def _base(evidence: dict[str, Any]) -> str:
    """The golden snapshot an evidence stream is an increment of, and its full stream in the golden store."""
    if not evidence.get("base"):
        return "-" if not evidence.get("sha256") else "- (a full stream)"
    return (f"{evidence['base']} (guid {evidence.get('base_guid')}; {evidence.get('base_stream')}, sha256 "
            f"{evidence.get('base_sha256')})" + ("; a clone stream: receive it as a new file system"
                                                 if evidence.get("base_clone") else ""))


def _coverage(report: Report, kinds: tuple[str, ...], nothing: str) -> tuple[str, tuple[str, ...]]:
    """What an empty table means, and where the steps that fill it did not run.

    Found nothing when the steps ran; "not run" when the playbook has none of
    them or none finished; a note naming the hosts where they did not.
    """
    ran = [h for k in kinds for h in report.ran.get(k, [])]
    missing = [h for k in kinds for h in report.missing.get(k, []) if h not in ran]
    names = " or ".join(f"`{k}`" for k in kinds)
    if not ran and not missing:
        return ("Not run: the playbook has no " + names + " step." if report.ran or report.missing else nothing), ()
    if not ran:
        return f"Not run: no {names} step finished.", ()
    if missing:
        where = ", ".join(_where(h) for h in dict.fromkeys(missing))
        return nothing, (f"Not run on {where} ({names} did not finish there).",)
    return nothing, ()


def _where(host: str) -> str:
    return "the run" if host == RUN_SCOPE else host


def _routes(state: dict[str, Any]) -> str:
    return ", ".join(f"{d} {c}" for d, c in state.get("routes", [])) or "-"
