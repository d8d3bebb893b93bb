"""The timeline picture: hosts in the order the run took them, labelled bars, a legend and round ticks."""

from __future__ import annotations

import re

from recovery.report.gantt import _tick_step, svg
from recovery.report.model import Bar


def test_hosts_in_run_order_bars_labelled_and_legend() -> None:
    bars = [Bar("zz-first", "boot_single", 100.0, 130.0, "done"), Bar("aa-second", "boot_single", 130.0, 190.0,
                                                                        "failed"),
            Bar("*", "return", 190.0, 192.0, "done"), Bar("zz-first", "restore", 192.0, 200.0, "unfinished")]
    picture = svg(bars)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", picture)
    assert texts.index("zz-first") < texts.index("aa-second") < texts.index("whole run (once-per-run steps)")
    assert "60.0 s FAILED" in texts and "boot_single" in texts and "restore" in texts
    for meaning in ("done", "failed", "started, never finished (run stopped)"):
        assert meaning in texts  # the legend
    assert texts[-1] == "time since start" and "0 s" in texts and "100 s" in texts


def test_ticks_are_round_and_few() -> None:
    assert _tick_step(7) == 1 and _tick_step(42) == 5 and _tick_step(0.3) == 0.05
    assert _tick_step(600) == 60 and _tick_step(3000) == 300  # minutes past a few minutes
    assert all(span / _tick_step(span) <= 10 for span in (0.01, 1.3, 17, 95, 299, 301, 5000, 86400))


def test_no_steps_says_so() -> None:
    assert "no steps ran" in svg([])
