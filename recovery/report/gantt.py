"""The timeline picture: one row per host, one bar per step (SVG, no dependencies)."""

from __future__ import annotations

from html import escape

from recovery.hostile import for_terminal
from recovery.report.model import Bar

ROW, LABEL, WIDTH = 28, 140, 900
COLOURS = {"done": "#3a7d44", "failed": "#c0392b"}


def svg(bars: list[Bar]) -> str:
    if not bars:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="30"><text x="4" y="20">no steps ran</text></svg>'
    start = min(b.start for b in bars)
    span = max(max(b.end for b in bars) - start, 0.001)
    hosts = sorted({b.host for b in bars}, key=lambda h: (h != "*", h))
    scale = (WIDTH - LABEL - 10) / span
    height = ROW * len(hosts) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             'font-family="sans-serif" font-size="11">']
    for row, host in enumerate(hosts):
        y = row * ROW + 4
        label = "run" if host == "*" else host
        parts.append(f'<text x="4" y="{y + 16}">{_text(label)}</text>')
        for bar in (b for b in bars if b.host == host):
            x = LABEL + (bar.start - start) * scale
            w = max((bar.end - bar.start) * scale, 1.5)
            colour = COLOURS.get(bar.state, "#888")
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 8}" fill="{colour}">'
                         f'<title>{_text(bar.step)}: {bar.end - bar.start:.2f} s ({bar.state})</title></rect>')
    parts.append(f'<text x="{LABEL}" y="{height - 6}">0 s</text>'
                 f'<text x="{WIDTH - 60}" y="{height - 6}">{span:.1f} s</text></svg>')
    return "".join(parts)


def _text(value: str) -> str:
    """A host or step name as inert SVG text: one line, controls visible (XML forbids most of them)."""
    return escape(for_terminal(value, 200, newlines=False))
