"""The incident report as one self-contained HTML page: readable on screen, printable, inert.

Everything is inline (CSS, the SVG timeline) and a Content-Security-Policy
forbids scripts and any fetch, so the page shows the same offline, attached
to a ticket or printed, and markup that slipped into a value could still do
nothing. Every value passes through :func:`_h` (one line, controls visible,
HTML-escaped), since most of them were chosen by hosts.
"""

from __future__ import annotations

from html import escape

from recovery.hostile import for_terminal
from recovery.report import tables
from recovery.report.gantt import svg
from recovery.report.model import Report
from recovery.report.tables import Strong, Table, when

VALUE_LIMIT = 1000
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
:root{--ok:#2e7d32;--bad:#c62828;--warn:#b26a00;--muted:#5f6368;--line:#d0d4d9}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
 max-width:1100px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.55em;margin:0 0 .3em}h2{font-size:1.15em;border-bottom:2px solid var(--line);
 padding-bottom:.15em;margin:1.6em 0 .5em}
table{border-collapse:collapse;width:100%;margin:.3em 0}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef1f4}tr.bad td{background:#fdecea}#phases table,#hosts table{width:auto;min-width:50%}
.badge{display:inline-block;padding:1px 10px;border-radius:10px;color:#fff;font-weight:600;background:var(--warn)}
.badge.done{background:var(--ok)}.badge.failed,.badge.stopped,.badge.BROKEN{background:var(--bad)}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1.2em;margin:.6em 0}
dl.summary dt{color:var(--muted)}dl.summary dd{margin:0}
.mono,code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
.empty{color:var(--muted);font-style:italic}.notrun{color:var(--warn);font-weight:600}
.note{color:var(--muted);margin:.2em 0}ul.failures li{color:var(--bad)}
nav ol{columns:3;margin:.4em 0;padding-left:1.4em}
.timeline{overflow-x:auto}.timeline svg{max-width:100%;height:auto}
@media print{body{max-width:none;margin:0;font-size:10pt}nav{display:none}
 h2{break-after:avoid}tr,svg,dl{break-inside:avoid}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def html(report: Report) -> str:
    """The whole page."""
    sections = [*tables.findings(report), *tables.traffic(report), tables.phases(report)]
    body = [_header(report), _toc(sections), _failures(report), _table(tables.hosts(report)),
            _timeline(report), *map(_table, sections), _recommendations(report),
            _table(tables.collectors(report)), _narrative(report)]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Incident recovery report: {_h(report.target)}</title><style>{_CSS}</style></head>\n"
            "<body>\n" + "\n".join(part for part in body if part) + "\n</body></html>\n")


def _h(value: object) -> str:
    """A value as inert HTML text on one line."""
    text = escape(for_terminal(str(value), VALUE_LIMIT, newlines=False))
    return f"<strong>{text}</strong>" if isinstance(value, Strong) else text


def _prose(text: str) -> str:
    """Our own sentence naming steps in backticks: those become code, the rest stays text."""
    parts = [_h(part) for part in text.split("`")]
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _header(report: Report) -> str:
    rto = f"{report.rto:.1f} s" if report.rto is not None else "traffic not back on a recovered host"
    run_time = f"{report.run_time:.1f} s" if report.run_time is not None else "unfinished"
    chain = "intact" if report.journal_intact else "BROKEN"
    rows = [("Run", f'<span class="mono">{_h(report.run_id)}</span>'),
            ("Status", f'<span class="badge {_h(report.status)}">{_h(report.status)}</span>'),
            ("Started", _h(when(report.started))), ("Finished", _h(when(report.finished))),
            ("Recovery time (RTO, to traffic back)", rto),
            ("Run time (evidence copied, run finished)", run_time),
            ("Journal head", f'<span class="mono">{_h(report.journal_head)}</span>'),
            ("Hash chain", f'<span class="badge {chain}">{chain}</span>' if chain == "BROKEN" else chain)]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (f"<header><h1>Incident recovery report: {_h(report.target)}</h1>"
            f'<dl class="summary">{items}</dl></header>')


def _toc(sections: list[Table]) -> str:
    entries = [("failures", "What did not work"), ("hosts", "Hosts"), ("timeline", "Timeline"),
               *((t.anchor, t.title) for t in sections), ("collectors", "Off-host copies"),
               ("happened", "What happened")]
    return "<nav><ol>" + "".join(f'<li><a href="#{a}">{escape(t)}</a></li>' for a, t in entries) + "</ol></nav>"


def _failures(report: Report) -> str:
    items = [f"<li>{_h(f)}</li>" for f in report.failures]
    items += [f"<li><strong>Not reached:</strong> {_h(u)}</li>" for u in report.unreached]
    inner = f'<ul class="failures">{"".join(items)}</ul>' if items else '<p class="empty">Nothing failed.</p>'
    return f'<section id="failures"><h2>What did not work</h2>{inner}</section>'


def _table(table: Table) -> str:
    if table.rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
        rows = "".join(f'<tr{" class=bad" if i in table.bad_rows else ""}>'
                       + "".join(f"<td>{_h(v)}</td>" for v in row) + "</tr>" for i, row in enumerate(table.rows))
        inner = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    else:
        css = "empty notrun" if table.empty.startswith("Not run") else "empty"
        inner = f'<p class="{css}">{_prose(table.empty)}</p>' if table.empty else ""
    lead = f"<p>{_h(table.lead)}</p>" if table.lead else ""
    notes = "".join(f'<p class="note">{_prose(n)}</p>' for n in table.notes)
    return f'<section id="{table.anchor}"><h2>{escape(table.title)}</h2>{lead}{inner}{notes}</section>'


def _timeline(report: Report) -> str:
    return ('<section id="timeline"><h2>Timeline</h2><p class="note">One row per step attempt; hosts in the '
            f'order the run took them.</p><div class="timeline">{svg(report.bars)}</div></section>')


def _recommendations(report: Report) -> str:
    if not report.recommendations:
        return ""
    items = "".join(f"<li>{_h(r)}</li>" for r in report.recommendations)
    return f'<section id="recommendations"><h2>Recommendations</h2><ul>{items}</ul></section>'


def _narrative(report: Report) -> str:
    rows = "".join(f'<tr><td class="mono">{_h(when(ts))}</td><td>{_h(text)}</td></tr>'
                   for ts, text in report.timeline)
    inner = (f"<table><thead><tr><th>when</th><th>what</th></tr></thead><tbody>{rows}</tbody></table>"
             if rows else '<p class="empty">The journal holds no events.</p>')
    return f'<section id="happened"><h2>What happened</h2>{inner}</section>'
