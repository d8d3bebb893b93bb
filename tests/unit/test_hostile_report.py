"""Host-chosen text in the incident report and on the terminal: inert, one line, valid UTF-8 and JSON."""

from __future__ import annotations

import json
import re
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
