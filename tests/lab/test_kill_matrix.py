"""kill -9 of `recover` at three points across the flow, a resume after each, the same end as an uninterrupted run.

The three (`kill_matrix.CI_POINTS`) leave a host half booted into the rescue system, a swap half
done and traffic half returned; the bench (`bench/kill_matrix.py`) kills at all nine.

The killed run is `recover eu-web` after the 2009 attack, which www-sync carried to us-web too:
it also shows that `return` keeps the swept, dirty sibling out and names it with the way to
recover it (the uninterrupted rehearsal of that case costs CI a lab of its own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from recovery.lab import kill_matrix
from recovery.lab.fleet import Lab

pytestmark = pytest.mark.lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab of its own; every VM and service it started is stopped, pass or fail."""
    fleet = Lab(tmp_path / "lab", progress=print)
    try:
        yield fleet
    finally:
        fleet.down(wipe=True)


def test_kill_9_anywhere_then_resume_ends_as_an_uninterrupted_run(lab: Lab, tmp_path: Path) -> None:
    env = {"RECOVERY_GOLDEN_STORE": str(tmp_path / "golden-store"), "RECOVERY_RUNS": str(tmp_path / "runs")}
    kill_matrix.prepare(lab, env, print)
    matrix = kill_matrix.run(lab, env, print, kill_matrix.CI_POINTS)
    log = (tmp_path / "kill-matrix.log").read_bytes().decode(errors="replace")
    failures = [line for line in log.splitlines() if " failed " in line or "error" in line.lower()]
    summary = {"points": [(a.point.label, a.killed, a.seconds) for a in matrix.attempts],
               "final_exit": matrix.final_exit, "differences": matrix.differences,
               "failures in the runs' output": failures[-20:], "killed_state": matrix.killed_state}
    print(json.dumps(summary, indent=2, default=str))
    assert matrix.kills >= len(kill_matrix.CI_POINTS) - 1, summary
    assert matrix.final_exit == 0, log[-5000:]
    assert matrix.same_end, summary
    assert matrix.killed_state["restore clones left over"] == []
    assert all(count == 1 for _, count in matrix.killed_state["evidence snapshots per dataset"])
    assert matrix.killed_state["traffic as return journaled it"] is True
    assert matrix.killed_state["the recovered host back in rotation"] is True
    assert matrix.killed_run is not None
    returned = [r for r in matrix.killed_run.journal.records() if r.event == "step_succeeded" and r.step == "return"]
    us_web = returned[-1].data["outputs"]["hosts"]["us-web"]
    assert us_web["admitted"] is False and "dirty" in us_web["reason"] and us_web["command"] == "recover us-web"
    report = " ".join((matrix.killed_run.dir / "report.md").read_text().split())
    assert "| us-web | **KEPT OUT** | sweep found it dirty" in report and "| recover us-web |" in report
