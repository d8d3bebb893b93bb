"""Four recoveries in a row in one lab: the kill -9 matrix, the rootkit through the rescue image, the same
rootkit through single-user mode, and a host that never comes back.

A lab boot and a golden capture cost minutes on TCG guests, so one lab carries them all, in this file's
order (pytest keeps it): each rehearsal after the kill matrix reuses the lab and the golden images the
matrix captured before the first attack (`--reuse-lab`). A host an earlier recovery left dirty on
purpose (the fooled single-user run) keeps that first golden as its truth.

1. The kill matrix (`kill_matrix.CI_POINTS`) kills `recover web` after the 2009 attack, which www-sync
   carried to both web hosts, with a host half booted into the rescue system, a swap half done and
   traffic half returned; the bench (`bench/kill_matrix.py`) kills at all nine points. eu-web takes the
   kills, us-web is recovered uninterrupted by the same run; both must come back with nothing of the
   attack left, in the same layout.
2. The 2005 attack with a python3 that hides it, recovered through the rescue image: found and removed.
3. The same attack recovered through the host's own single-user mode: judged clean, comes back dirty.
4. The failure rehearsal: eu-web never gets past its boot and us-web holds the 2009 scripts.

The README's main command rehearses the 2005 attack alone, in a fresh lab.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from collections.abc import Iterator

import pytest

from recovery import rehearsal
from recovery.lab import kill_matrix
from recovery.lab.fleet import Lab
from tests.support.project import recover

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The module's lab; every VM and service it started is stopped, pass or fail. Its evidence copies
    (gigabytes) are removed when every test of the module passed, kept to be read otherwise."""
    directory = tmp_path_factory.mktemp("recoveries") / "lab"
    failed_before = request.session.testsfailed
    try:
        yield directory
    finally:
        Lab(directory, progress=lambda line: None).down(wipe=True)
        if request.session.testsfailed == failed_before:
            shutil.rmtree(directory.parent, ignore_errors=True)


def rehearse(lab_dir: Path, *args: str):
    return recover("rehearse", *args, "--lab-dir", str(lab_dir), "--reuse-lab", cwd=lab_dir.parent, timeout=3000)


def recovery_report(lab_dir: Path) -> str:
    """The incident report of the newest run (the rehearsal's recovery)."""
    *_, newest = sorted(lab_dir.glob("runs/*/report.md"))
    return " ".join(newest.read_text().split())


def graded_failures(stdout: str) -> list[str]:
    """The grading's FAIL lines (the preflight's "0 FAIL" summary is not one)."""
    return re.findall(r"^\s*FAIL .*$", stdout, re.MULTILINE)


def test_kill_9_anywhere_then_resume_ends_as_an_uninterrupted_run(lab_dir: Path) -> None:
    lab = Lab(lab_dir, progress=print)
    env = {"RECOVERY_GOLDEN_STORE": str(lab_dir / "golden-store"), "RECOVERY_RUNS": str(lab_dir / "runs")}
    truth = json.loads(kill_matrix.prepare(lab, env, print).read_text())
    matrix = kill_matrix.run(lab, env, print, kill_matrix.CI_POINTS)
    log = (lab_dir / "kill-matrix.log").read_bytes().decode(errors="replace")
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


def test_a_rootkit_is_removed_through_the_rescue_image_and_fools_single_user_mode(lab_dir: Path) -> None:
    """The wrapper python3 hides the intruder's files from the agent: from the rescue image the
    recovery still finds and removes everything; the same attack recovered through the host's own
    single-user mode (same lab, after the first recovery) is judged clean and comes back dirty."""
    rescued = rehearse(lab_dir, "eu-web", "--scenario", "rootkit")
    assert rescued.returncode == 0, rescued.stdout[-6000:] + rescued.stderr[-3000:]
    assert graded_failures(rescued.stdout) == [] and "all checks passed" in rescued.stdout
    text, report = " ".join(rescued.stdout.split()), recovery_report(lab_dir)
    assert "golden capture: kept from an earlier rehearsal of this lab" in text  # the matrix's, before any attack
    for check in ("nothing of the attack left on the host", "the quarantine holds them",
                  "every path the attack changed is in a protected dataset", "evidence snapshots held",
                  "mirror answered during the run", "no host in rotation holds an attack file", "journal verify"):
        assert f"PASS {check}" in text or f"PASS eu-web: {check}" in text, check
    assert "eu-web: rescue root shell on the console" in text  # nothing of the host ran
    assert "rpool/ROOT/debian: now auto-" in text  # the system itself was restored, not only the data
    for planted in ("/usr/sbin/telnetd", "/etc/cron.d/awstats", "/usr/bin/python3"):  # found on the system too
        assert planted in report, planted
    assert "/var/log/wtmp" in report  # the intruder's truncation of the login records is an indicator
    assert "A sweep runs the host's own tools on its running system, which a rootkit can deceive" in report
    # the intruder touched eu-web only: us-web is swept clean and comes back, eu-web on its restore
    assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.11', '127.0.0.12']" in text
    assert "us-web: admitted: swept clean" in text
    assert "eu-web: admitted: restored (" in text

    fooled = rehearse(lab_dir, "eu-web", "--scenario", "rootkit", "--no-rescue")
    assert fooled.returncode != 0, fooled.stdout[-6000:]
    text = " ".join(fooled.stdout.split())
    assert "eu-web: single-user root shell on the console" in text
    assert "FAIL eu-web: nothing of the attack left on the host" in text
    assert "/usr/sbin/telnetd" in text and "/usr/bin/python3 (still modified)" in text


def test_failure_rehearsal_keeps_the_failed_host_out(lab_dir: Path) -> None:
    """eu-web never gets past its boot (no rescue medium, a wrong console password) and us-web holds
    the 2009 scripts: no host may return, both are named, and traffic stays on the mirror."""
    result = rehearse(lab_dir, "eu-web", "--scenario", "rsync-2009", "--unbootable", "eu-web")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    assert "PASS recover exit code — exit 1 (expected 1)" in text
    assert "PASS eu-web: reported failed, left out — failed at boot_single" in text
    assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.4']" in text
    assert "PASS eu-web: kept out and named" in text and "PASS us-web: kept out and named" in text
    assert "(`recover us-web`)" in text  # the sweep found the 2009 scripts on us-web: named with its remedy
    assert "PASS no host in rotation holds an attack file" in text
