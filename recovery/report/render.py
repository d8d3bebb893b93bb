"""The incident report as Markdown and as HTML, in the spirit of a public post-mortem.

Most of what a report says was chosen by hosts (file names, error messages,
dataset and step names), so every value passes through :func:`_md`: one
line, controls and escapes visible, and nothing Markdown or HTML would obey.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.report.gantt import svg
from recovery.report.model import Report
from recovery.steps.sweep import CAVEAT

#: Longest value shown in one place of the report.
VALUE_LIMIT = 1000
# Markdown's table separator, code spans, links and raw HTML; backslashes doubled so no escape is faked.
_INERT = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]",
                        "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def _md(value: object) -> str:
    """A value as inert Markdown text on one line."""
    return for_terminal(str(value), VALUE_LIMIT, newlines=False).translate(_INERT)


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines + [""]


def markdown(report: Report) -> str:
    total = (report.finished - report.started) if report.finished else None
    out = [f"# Incident recovery report: {_md(report.target)}", "",
           f"- Run: {_md(report.run_id)}, status **{_md(report.status)}**",
           f"- Started {_when(report.started)}, finished {_when(report.finished)}"
           + (f" (RTO {total:.1f} s)" if total is not None else ""),
           f"- Journal head {_md(report.journal_head)} — chain "
           + ("intact" if report.journal_intact else "**BROKEN**"), "",
           "## Hosts", ""]
    out += _table(["host", "outcome"], [[h, s] for h, s in report.hosts.items()])
    out += ["## What happened", ""]
    out += [f"- {_when(ts)} — {_md(text)}" for ts, text in report.timeline] + [""]
    out += ["## Indicators of compromise", ""]
    out += _table(["host", "dataset", "path", "change", "rule", "ctime", "found by"],
                  [[i["host"], i["dataset"], i["path"], i["change"], i.get("rule"), i.get("ctime"), i.get("found_by")]
                   for i in report.indicators])
    out += ["## What was restored", ""]
    out += _table(["host", "dataset", "restored from", "compromised state kept as", "evidence"],
                  [[r["host"], r["dataset"], r.get("clean"), r.get("quarantine"), r.get("evidence")]
                   for r in report.restored])
    out += ["## Changes made after the clean snapshot (to salvage from the quarantine)", ""]
    out += _table(["host", "dataset", "path", "change"],
                  [[c["host"], c["dataset"], c["path"], c["change"]] for c in report.lost])
    out += ["## Evidence (chain of custody)", ""]
    out += _table(["host", "snapshot", "guid", "bytes", "sha256"],
                  [[e["host"], e["snapshot"], e.get("guid"), e.get("bytes", "-"), e.get("sha256", "-")]
                   for e in report.evidence])
    out += ["## Traffic", ""]
    out += _table(["step", "channel", "before", "after", "foreign destinations (indicator)", "kept out"],
                  [[t["step"], t["channel"], _routes(t["before"]), _routes(t["after"]),
                    ", ".join(t.get("foreign", [])) or "-", ", ".join(t.get("kept_out", [])) or "-"]
                   for t in report.traffic])
    out += [f"- **Not reached:** {_md(u)}" for u in report.unreached] + ([""] if report.unreached else [])
    out += _rotation(report)
    out += ["## Time per phase", ""]
    out += _table(["step", "seconds"], [[s, f"{d:.2f}"] for s, d in report.phases.items()])
    if report.recommendations:
        out += ["## Recommendations", ""] + [f"- {_md(r)}" for r in report.recommendations] + [""]
    out += ["## What did not work", ""]
    out += [f"- {_md(f)}" for f in report.failures] or ["Nothing failed."]
    return "\n".join(out) + "\n"


def _rotation(report: Report) -> list[str]:
    """Who came back into rotation and on what evidence; who stays out, why, and what would recover it."""
    out = ["## Back in rotation", ""]
    out += _table(["host", "in rotation", "why", "to recover it"],
                  [[r["host"], "yes" if r["admitted"] else "**KEPT OUT**", r["reason"], r.get("command") or "-"]
                   for r in report.rotation])
    if report.swept:
        out += ["## Sweep of the service's other hosts", "", f"{_md(CAVEAT[:1].upper() + CAVEAT[1:])}.", ""]
        out += _table(["host", "verdict", "indicators", "why", "golden manifest"],
                      [[s["host"], s["verdict"], s["indicators"], s.get("reason") or "-", s.get("golden") or "-"]
                       for s in report.swept])
    return out


def _routes(state: dict) -> str:
    return ", ".join(f"{d} {c}" for d, c in state.get("routes", [])) or "-"


def html(report: Report) -> str:
    body = escape(markdown(report))
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Incident recovery report: {_html(report.target)}</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
            "pre{white-space:pre-wrap}</style></head><body>"
            f"<h1>Incident recovery report: {_html(report.target)}</h1>"
            f"<h2>Timeline</h2>{svg(report.bars)}<pre>{body}</pre></body></html>\n")


def _html(value: object) -> str:
    return escape(for_terminal(str(value), VALUE_LIMIT, newlines=False))


def write(report: Report, directory: Path) -> list[Path]:
    paths = [directory / "report.md", directory / "report.html", directory / "timeline.svg"]
    paths[0].write_text(markdown(report))
    paths[1].write_text(html(report))
    paths[2].write_text(svg(report.bars) + "\n")
    return paths
