"""The timeline picture: a Gantt chart of every step on every host (SVG, no dependencies, no scripts).

Hosts come in the order the run took them, each with one labelled row per
step attempt, on a time axis with ticks; colours are explained in a legend
and repeated in words in each bar's tooltip (a printout in grey still reads).
Every name in it was chosen by a host or a playbook: all of it is escaped.
"""

from __future__ import annotations

import math
from html import escape

from recovery.hostile import for_terminal
from recovery.report.model import Bar

WIDTH, LABEL, RIGHT = 960, 190, 110  # picture width, label column, room for the last bar's duration
ROW, HEAD, TOP, AXIS = 18, 22, 34, 26  # step row, host heading, legend band, axis band
COLOURS = {"done": "#2e7d32", "failed": "#c62828", "unfinished": "#b26a00"}
MEANING = {"done": "done", "failed": "failed", "unfinished": "started, never finished (run stopped)"}
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def svg(bars: list[Bar]) -> str:
    """The whole chart; a run with no steps gets a one-line picture that says so."""
    if not bars:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="30" {FONT}>'
                '<text x="4" y="20">no steps ran</text></svg>')
    rows = _rows(bars)
    height = TOP + sum(HEAD + ROW * len(host_bars) for _, host_bars in rows) + AXIS
    axis = _Axis(min(b.start for b in bars), max(b.end for b in bars))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" {FONT} role="img" aria-label="timeline of the run">',
             _legend(), axis.grid(TOP - 6, height - AXIS)]
    y = TOP
    for host, host_bars in rows:
        parts.append(_host_heading(host, y))
        y += HEAD
        for bar in host_bars:
            parts.append(_bar_row(bar, y, axis))
            y += ROW
    parts.append(axis.labels(height - AXIS + 14))
    return "".join(parts) + "</svg>"


def _rows(bars: list[Bar]) -> list[tuple[str, list[Bar]]]:
    """Hosts in the order they first started a step (the run's order), each host's attempts in time order."""
    rows: dict[str, list[Bar]] = {}
    for bar in sorted(bars, key=lambda b: b.start):
        rows.setdefault(bar.host, []).append(bar)
    return list(rows.items())


def _legend() -> str:
    items, x = [], LABEL
    for state, colour in COLOURS.items():
        items.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 17}" y="16">{MEANING[state]}</text>')
        x += 40 + 6 * len(MEANING[state])
    return '<g class="legend">' + "".join(items) + "</g>"


def _host_heading(host: str, y: int) -> str:
    label = "whole run (once-per-run steps)" if host == "*" else host
    return (f'<rect x="0" y="{y + 2}" width="{WIDTH}" height="{HEAD - 4}" fill="#eef1f4"/>'
            f'<text x="4" y="{y + HEAD - 7}" font-weight="bold">{_text(label, 60)}</text>')


def _bar_row(bar: Bar, y: int, axis: "_Axis") -> str:
    x, end = axis.x(bar.start), axis.x(bar.end)
    width = max(end - x, 2.0)
    seconds = bar.end - bar.start
    return (f'<text x="14" y="{y + 13}">{_text(bar.step, 30)}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW - 6}" rx="2" '
            f'fill="{COLOURS.get(bar.state, "#777")}"><title>{_text(bar.host, 60)} · {_text(bar.step, 60)}: '
            f'{seconds:.2f} s, {MEANING.get(bar.state, bar.state)}</title></rect>'
            f'<text x="{x + width + 4:.1f}" y="{y + 13}" fill="#444">{_duration(seconds)}'
            f'{" FAILED" if bar.state == "failed" else ""}</text>')


class _Axis:
    """Seconds since the run's first step, mapped onto the chart, with round ticks (1, 2 or 5 times 10^n)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.span = start, max(end - start, 0.001)
        self.scale = (WIDTH - LABEL - RIGHT) / self.span
        self.step = _tick_step(self.span)

    def x(self, ts: float) -> float:
        return LABEL + (ts - self.start) * self.scale

    def ticks(self) -> list[float]:
        return [i * self.step for i in range(int(self.span / self.step + 1e-9) + 1)]

    def grid(self, top: int, bottom: int) -> str:
        lines = [f'<line x1="{LABEL + t * self.scale:.1f}" y1="{top}" x2="{LABEL + t * self.scale:.1f}" '
                 f'y2="{bottom}" stroke="#d0d4d9" stroke-width="1"/>' for t in self.ticks()]
        return '<g class="grid">' + "".join(lines) + "</g>"

    def labels(self, y: int) -> str:
        texts = [f'<text x="{LABEL + t * self.scale:.1f}" y="{y}" text-anchor="middle">'
                 f'{_clock(t, self.step >= 60)}</text>' for t in self.ticks()]
        return '<g class="axis">' + "".join(texts) + f'<text x="4" y="{y}">time since start</text></g>'


#: Tick steps past a minute: whole minutes, as a clock reads them.
_MINUTES = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)


def _tick_step(span: float, most: int = 10) -> float:
    """The smallest round step that puts at most ``most`` ticks on ``span`` seconds (1, 2, 5 x 10^n, or minutes)."""
    if span / most > 30:
        return next((step for step in _MINUTES if span / step <= most), span / most)
    exponent = math.floor(math.log10(span / most))
    return next(m * 10.0 ** p for p in (exponent, exponent + 1) for m in (1, 2, 5) if span / (m * 10.0 ** p) <= most)


def _clock(seconds: float, minutes: bool) -> str:
    """A tick's label: seconds, or m:ss on an axis ticked in minutes."""
    if not minutes:
        return f"{seconds:g} s"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _text(value: str, limit: int) -> str:
    """A host or step name as inert SVG text: one line, controls visible (XML forbids most of them)."""
    return escape(for_terminal(value, limit, newlines=False))
