"""kill -9 of `recover` at three points across the flow, a resume after each, the same end as an uninterrupted run.

The three (`kill_matrix.CI_POINTS`) leave a host half booted into the rescue system, a swap half
done and traffic half returned; the bench (`bench/kill_matrix.py`) kills at all nine.

The killed run is `recover web` after the 2009 attack, which www-sync carried to both web hosts:
eu-web takes the kills, us-web is recovered uninterrupted by the same run, and both must come back
with nothing of the attack left (target `eu-web` with us-web kept out and named is the failure
rehearsal's, in tests/lab/test_rehearsal.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery import rehearsal
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
    truth = json.loads(kill_matrix.prepare(lab, env, print).read_text())
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
    assert ("rpool/ROOT/debian", 1) in matrix.killed_state["evidence snapshots per dataset"]
    assert matrix.killed_state["traffic as return journaled it"] is True
    # target web: both hosts restored in this run, both back, nothing of the attack left on either
    for host in (kill_matrix.KILLED, kill_matrix.REFERENCE):
        assert (matrix.killed_state if host == kill_matrix.KILLED else matrix.reference_state)[
            "the recovered host back in rotation"] is True, host
        assert rehearsal.traces_left(lab, truth, host) == [], host
    assert matrix.killed_run is not None
    returned = [r for r in matrix.killed_run.journal.records() if r.event == "step_succeeded" and r.step == "return"]
    admitted = returned[-1].data["outputs"]["hosts"]
    assert {h: (d["admitted"], d["reason"].split(" (")[0]) for h, d in admitted.items()} == {
        "eu-web": (True, "restored"), "us-web": (True, "restored")}, admitted
