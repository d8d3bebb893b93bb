"""`recover rehearse` end to end, three recoveries in a row in one lab: the 2005 attack with its rootkit
through the rescue image, the same attack through single-user mode, and a host that never comes back.

A lab boot and a golden capture cost minutes on TCG guests, so one lab carries the three, in this file's
order (pytest keeps it). The first rehearsal starts the lab fresh and captures the golden images; the
next two reuse the lab and those golden images (`--reuse-lab`): eu-web, which the fooled single-user
recovery leaves dirty on purpose, keeps its first golden as its truth. The 2005 intruder touched eu-web
only, so the 2009 attack of the failure rehearsal finds the staging host and us-web as the lab made them.

rsync-2009 on target web (both hosts restored and back) runs in tests/lab/test_kill_matrix.py, killed
and resumed, in a lab of its own: its staging host keeps the 2009 scripts that the next scheduled rsync
would carry out again. The README's main command rehearses the 2005 attack alone.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    return recover("rehearse", *args, "--lab-dir", str(lab_dir), cwd=lab_dir.parent, timeout=3000)


def recovery_report(lab_dir: Path) -> str:
    """The incident report of the newest run (the rehearsal's recovery)."""
    *_, newest = sorted(lab_dir.glob("runs/*/report.md"))
    return " ".join(newest.read_text().split())


def graded_failures(stdout: str) -> list[str]:
    """The grading's FAIL lines (the preflight's "0 FAIL" summary is not one)."""
    return re.findall(r"^\s*FAIL .*$", stdout, re.MULTILINE)


def test_a_rootkit_is_removed_through_the_rescue_image_and_fools_single_user_mode(lab_dir: Path) -> None:
    """The wrapper python3 hides the intruder's files from the agent: from the rescue image the
    recovery still finds and removes everything; the same attack recovered through the host's own
    single-user mode (same lab, after the first recovery) is judged clean and comes back dirty."""
    rescued = rehearse(lab_dir, "eu-web", "--scenario", "rootkit")  # a fresh lab
    assert rescued.returncode == 0, rescued.stdout[-6000:] + rescued.stderr[-3000:]
    assert graded_failures(rescued.stdout) == [] and "all checks passed" in rescued.stdout
    text, report = " ".join(rescued.stdout.split()), recovery_report(lab_dir)
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

    fooled = rehearse(lab_dir, "eu-web", "--scenario", "rootkit", "--reuse-lab", "--no-rescue")
    assert fooled.returncode != 0, fooled.stdout[-6000:]
    text = " ".join(fooled.stdout.split())
    assert "golden capture: kept from an earlier rehearsal of this lab" in text  # not the dirty eu-web again
    assert "eu-web: single-user root shell on the console" in text
    assert "FAIL eu-web: nothing of the attack left on the host" in text
    assert "/usr/sbin/telnetd" in text and "/usr/bin/python3 (still modified)" in text


def test_failure_rehearsal_keeps_the_failed_host_out(lab_dir: Path) -> None:
    """eu-web never gets past its boot (no rescue medium, a wrong console password) and us-web holds
    the 2009 scripts: no host may return, both are named, and traffic stays on the mirror."""
    result = rehearse(lab_dir, "eu-web", "--scenario", "rsync-2009", "--unbootable", "eu-web", "--reuse-lab")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    assert "PASS recover exit code — exit 1 (expected 1)" in text
    assert "PASS eu-web: reported failed, left out — failed at boot_single" in text
    assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.4']" in text
    assert "PASS eu-web: kept out and named" in text and "PASS us-web: kept out and named" in text
    assert "(`recover us-web`)" in text  # the sweep found the 2009 scripts on us-web: named with its remedy
    assert "PASS no host in rotation holds an attack file" in text
