"""The incident report as Markdown (terminals, tickets) and the files of a run's report.

Most of what a report says was chosen by hosts (file names, error messages,
dataset and step names), so every value passes through :func:`_md`: one
line, controls and escapes visible, and nothing Markdown or HTML would obey.
What went wrong comes first; the sections are those of :mod:`tables`.
"""

from __future__ import annotations

from pathlib import Path

from recovery.hostile import for_terminal
from recovery.report import page, tables
from recovery.report.gantt import svg
from recovery.report.model import Report
from recovery.report.tables import Strong, Table, when

#: Longest value shown in one place of the report.
VALUE_LIMIT = 1000
# Markdown's table separator, code spans, links and raw HTML; backslashes doubled so no escape is faked.
_INERT = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]",
                        "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _md(value: object) -> str:
    """A value as inert Markdown text on one line."""
    text = for_terminal(str(value), VALUE_LIMIT, newlines=False).translate(_INERT)
    return f"**{text}**" if isinstance(value, Strong) else text


def _note(text: str) -> str:
    """Our own sentence naming steps in backticks: the backticks stay code, everything else is inert."""
    return "`".join(_md(part) for part in text.split("`"))


def _table(table: Table) -> list[str]:
    out = [f"## {table.title}", ""] + ([_md(table.lead), ""] if table.lead else [])
    if table.rows:
        out += ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
        out += ["| " + " | ".join(_md(v) for v in row) + " |" for row in table.rows]
    elif table.empty:
        out.append(_note(table.empty))
    return out + [""] + [f"- {_note(n)}" for n in table.notes] + ([""] if table.notes else [])


def markdown(report: Report) -> str:
    out = [f"# Incident recovery report: {_md(report.target)}", "",
           f"- Run: {_md(report.run_id)}, status **{_md(report.status)}**",
           f"- Started {when(report.started)}, finished {when(report.finished)}"
           + (f" (run time {report.run_time:.1f} s)" if report.run_time is not None else ""),
           "- Recovery time (RTO, to traffic back): "
           + (f"{report.rto:.1f} s" if report.rto is not None else "traffic not back on a recovered host"),
           f"- Journal head {_md(report.journal_head)} — chain "
           + ("intact" if report.journal_intact else "**BROKEN**"), "",
           "## What did not work", ""]
    out += [f"- {_md(f)}" for f in report.failures] or ["Nothing failed."]
    out += [f"- **Not reached:** {_md(u)}" for u in report.unreached] + [""]
    out += _table(tables.hosts(report))
    for table in [*tables.findings(report), *tables.traffic(report), tables.phases(report)]:
        out += _table(table)
    if report.recommendations:
        out += ["## Recommendations", ""] + [f"- {_md(r)}" for r in report.recommendations] + [""]
    out += _table(tables.collectors(report))
    out += ["## What happened", ""] + [f"- {when(ts)} — {_md(text)}" for ts, text in report.timeline]
    return "\n".join(out) + "\n"


def write(report: Report, directory: Path) -> list[Path]:
    paths = [directory / "report.md", directory / "report.html", directory / "timeline.svg"]
    paths[0].write_text(markdown(report))
    paths[1].write_text(page.html(report))
    paths[2].write_text(svg(report.bars) + "\n")
    return paths
