"""Host-chosen text in the incident report (Markdown, HTML, SVG) and on the terminal: inert, one line, valid UTF-8."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from recovery.hostile import for_terminal
from recovery.report.model import Bar, Report
from recovery.report.render import write

HOSTILE = ("x\x1b[2J\x1b]0;owned\x07|`rm -rf`|<script>alert(1)</script>\n| forged | row |\r\n"
           "# heading\x00\x9b1m\u202eevil\ud8ff [link](http://evil) \\|")


def hostile_report() -> Report:
    report = Report("r1" + HOSTILE, "eu-web" + HOSTILE, "failed" + HOSTILE, 1.0, 2.0, "head" + HOSTILE, False)
    report.hosts = {"web1" + HOSTILE: "failed: " + HOSTILE}
    report.bars = [Bar("web1" + HOSTILE, "diff" + HOSTILE, 1.0, 2.0, "failed")]
    report.phases = {"diff" + HOSTILE: 1.0}
    report.timeline = [(1.0, "web1 diff FAILED: " + HOSTILE)]
    report.indicators = [{"host": "web1", "dataset": "tank/www" + HOSTILE, "path": "/srv/www/" + HOSTILE,
                          "change": "+", "rule": "web-script" + HOSTILE, "ctime": HOSTILE}]
    report.restored = [{"host": "web1", "dataset": HOSTILE, "clean": HOSTILE, "quarantine": HOSTILE,
                        "evidence": HOSTILE}]
    report.lost = [{"host": "web1", "dataset": HOSTILE, "path": HOSTILE, "change": HOSTILE}]
    report.evidence = [{"host": "web1", "snapshot": HOSTILE, "guid": HOSTILE, "sha256": HOSTILE}]
    report.traffic = [{"step": "divert", "channel": HOSTILE, "before": {"routes": [[HOSTILE, HOSTILE]]},
                       "after": {"routes": []}}]
    report.swept = [{"host": "web2" + HOSTILE, "verdict": "dirty", "indicators": 1, "reason": HOSTILE,
                     "golden": HOSTILE}]
    report.rotation = [{"host": "web2" + HOSTILE, "admitted": False, "reason": HOSTILE, "command": HOSTILE}]
    report.failures = ["web1: " + HOSTILE]
    return report


@pytest.fixture
def written(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in write(hostile_report(), tmp_path)}


def test_report_holds_no_control_bytes_or_markup(written: dict[str, bytes]) -> None:
    for name, data in written.items():
        text = data.decode("utf-8")  # lone surrogates made visible, so it is valid UTF-8
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text), name
        assert "<script" not in text, name
    markdown = written["report.md"].decode()
    assert "`" not in markdown.replace("\\`", "")
    assert "](" not in markdown.replace("\\](", "")


def test_no_host_newline_starts_a_line_of_the_report(written: dict[str, bytes]) -> None:
    lines = written["report.md"].decode().splitlines()
    assert not any(line.startswith(("| forged", "# heading")) for line in lines)
    table_rows = [line for line in lines if line.startswith("| ")]
    widths = {line.replace("\\|", "").count("|") for line in table_rows}
    assert widths <= {3, 5, 6, 7, 8}, widths  # tables of 2, 4, 5, 6, 7 columns: no host "|" splits a cell


def test_for_terminal_one_line_and_json_safe() -> None:
    shown = for_terminal(HOSTILE, newlines=False)
    assert "\n" not in shown and "\r" not in shown and "\t" not in for_terminal("a\tb", newlines=False)
    assert "\\x0a" in shown and "\\u202e" in shown and "\\udcff" not in shown
    assert "\\ud8ff" in shown
    shown.encode("utf-8")  # no lone surrogate left
    assert json.loads(json.dumps(shown, ensure_ascii=False)) == shown
    assert "\n" in for_terminal("two\nlines")  # multi-line display (consoles, log tails) is still possible


#: Every element the HTML page and its timeline use; anything else came from a host.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "dl", "dt", "dd", "span", "nav",
             "ol", "ul", "li", "a", "section", "p", "code", "strong", "table", "thead", "tbody", "tr", "th", "td",
             "div", "svg", "g", "rect", "text", "line"}


class _Elements(HTMLParser):
    """The tags and attributes of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs


def test_html_page_holds_only_its_own_elements_and_no_active_content(written: dict[str, bytes]) -> None:
    page = written["report.html"].decode()
    parsed = _Elements()
    parsed.feed(page)
    assert parsed.tags <= PAGE_TAGS, parsed.tags - PAGE_TAGS
    names = {name for name, _ in parsed.attributes}
    assert not {n for n in names if n.startswith("on")}, names
    links = [value for name, value in parsed.attributes if name in ("href", "src")]
    assert all(link and link.startswith("#") for link in links), links  # in-page anchors only: nothing fetched
    assert "default-src 'none'" in page  # and the browser is told so
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svg_text = written["timeline.svg"].decode()
    assert "<script" not in svg_text and "&lt;script&gt;" in svg_text


def test_a_host_cannot_forge_a_progress_line(capsys: pytest.CaptureFixture[str]) -> None:
    from recovery import ui

    progress = ui.LiveProgress(assume_yes=True)
    progress.event("restore", "eu-web", "failed", "disk full\n    0.5s eu-web       restore              done")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and "failed" in lines[0]
