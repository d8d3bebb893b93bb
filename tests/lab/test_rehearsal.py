"""`recover rehearse` end to end: both seed incidents, and a host that never comes back."""

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
    for check in ("attack files gone from the live datasets", "the quarantine holds them",
                  "evidence snapshots held", "mirror answered during the run", "traffic returned",
                  "journal verify"):
        assert check in result.stdout
    assert "all checks passed" in result.stdout
    text, report = " ".join(result.stdout.split()), recovery_report(lab_dir)
    assert "PASS no host in rotation holds an attack file" in text
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
    result = rehearse(lab_dir, "web", "--scenario", "rsync-2009", "--unbootable", "us-web")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    assert "PASS us-web: reported failed, left out — failed at boot_single" in text
    assert "PASS eu-web: attack files gone from the live datasets" in text
    assert "PASS traffic returned (clean hosts only) — www now ['127.0.0.11']" in text
    assert "PASS us-web: kept out and named — failed at boot_single" in text
    assert "PASS no host in rotation holds an attack file" in text
