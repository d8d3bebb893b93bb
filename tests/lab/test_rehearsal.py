"""`recover rehearse` end to end: the 2005 incident, its rootkit through the rescue image and through
single-user mode, and a host that never comes back."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from recovery.lab.fleet import Lab
from tests.support.project import recover

pytestmark = pytest.mark.lab


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    """A lab of its own; every VM and service it started is stopped, pass or fail."""
    directory = tmp_path / "lab"
    try:
        yield directory
    finally:
        Lab(directory, progress=lambda line: None).down(wipe=True)


def rehearse(lab_dir: Path, *args: str):
    return recover("rehearse", *args, "--lab-dir", str(lab_dir), cwd=lab_dir.parent, timeout=3000)


def recovery_report(lab_dir: Path) -> str:
    """The incident report of the rehearsal's recovery run (the newest run; golden capture came first)."""
    *_, newest = sorted(lab_dir.glob("runs/*/report.md"))
    return " ".join(newest.read_text().split())


# rsync-2009 on eu-web runs in tests/lab/test_kill_matrix.py (killed and resumed, same checks of us-web);
# the failure rehearsal below rehearses rsync-2009 on the whole web group.
@pytest.mark.parametrize("scenario", ["awstats-2005"])
def test_rehearsal_of_a_seed_incident_passes(lab_dir: Path, scenario: str) -> None:
    result = rehearse(lab_dir, "eu-web", "--scenario", scenario)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "FAIL" not in result.stdout
    for check in ("nothing of the attack left on the host", "the quarantine holds them",
                  "every path the attack changed is in a protected dataset",
                  "evidence snapshots held", "mirror answered during the run", "traffic returned",
                  "journal verify"):
        assert check in result.stdout
    assert "all checks passed" in result.stdout
    text, report = " ".join(result.stdout.split()), recovery_report(lab_dir)
    assert "PASS no host in rotation holds an attack file" in text
    assert "eu-web: rescue root shell on the console" in text  # nothing of the host ran
    assert "rpool/ROOT/debian: now auto-" in text  # the system itself was restored, not only the data
    assert "/usr/sbin/telnetd" in report and "/etc/cron.d/awstats" in report  # found on the root file system
    assert "A sweep runs the host's own tools on its running system, which a rootkit can deceive" in report
    if scenario == "rsync-2009":  # www-sync carried the scripts to us-web too: swept, found, kept out, named
        assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.11']" in text
        assert "PASS us-web: kept out and named — sweep found it dirty" in text
        assert "us-web: stays out: sweep found it dirty" in text and "`recover us-web`" in text
        assert "| us-web | **KEPT OUT** | sweep found it dirty" in report and "| recover us-web |" in report
    else:  # the 2005 intruder touched eu-web only: us-web is swept clean and comes back
        assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.11', '127.0.0.12']" in text
        assert "us-web: admitted: swept clean" in text
        assert "| us-web | yes | swept clean" in report


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
    assert "PASS no host in rotation holds an attack file" in text


def test_a_rootkit_is_removed_through_the_rescue_image_and_fools_single_user_mode(lab_dir: Path) -> None:
    """The wrapper python3 hides the intruder's files from the agent: from the rescue image the
    recovery still finds and removes everything; the same attack recovered through the host's own
    single-user mode (same lab, after the first recovery) is judged clean and comes back dirty."""
    rescued = rehearse(lab_dir, "eu-web", "--scenario", "rootkit")
    assert rescued.returncode == 0, rescued.stdout[-6000:] + rescued.stderr[-3000:]
    text = " ".join(rescued.stdout.split())
    assert "PASS eu-web: nothing of the attack left on the host" in text
    assert "/usr/bin/python3" in recovery_report(lab_dir)  # the wrapper itself was an indicator
    # the intruder touched eu-web only: us-web is swept clean and comes back, eu-web on its restore
    assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.11', '127.0.0.12']" in text
    assert "us-web: admitted: swept clean" in text
    assert "eu-web: admitted: restored (" in text

    fooled = rehearse(lab_dir, "eu-web", "--scenario", "rootkit", "--reuse-lab", "--no-rescue")
    assert fooled.returncode != 0, fooled.stdout[-6000:]
    text = " ".join(fooled.stdout.split())
    assert "eu-web: single-user root shell on the console" in text
    assert "FAIL eu-web: nothing of the attack left on the host" in text
    assert "/usr/sbin/telnetd" in text and "/usr/bin/python3 (still modified)" in text
