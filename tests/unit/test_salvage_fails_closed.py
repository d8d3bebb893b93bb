"""Salvage fails closed: exact-byte classification, force for anything near an indicator, a safe copy."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest

from recovery.zfs.diff import parse_diff
from recovery.zfs.salvage import (
    BELOW_INDICATOR,
    HOLDS_INDICATOR,
    UNCLASSIFIED,
    classify_for_salvage,
    copy_commands,
    refusals,
)
from recovery.zfs.triage import triage
from tests.support.zfs_output import diff_line


def journaled(path: bytes, verdict: str) -> dict[str, str]:
    """A finding as the diff step journals it: escaped display path plus the exact bytes."""
    return {"path": "(display form, not trusted)", "path_b64": base64.b64encode(path).decode(), "verdict": verdict}


def test_classes_by_exact_bytes() -> None:
    evil = b"/srv/www/up/shell.php\xff"
    look_alike = b"/srv/www/up/shell.php\\xff"  # what the escaped display name reads as
    findings = [journaled(evil, "indicator"), journaled(b"/srv/www/up/notes.txt", "suspicious"),
                journaled(b"/srv/www/up/bad", "indicator"), {"path": "/srv/www/up/old.txt", "verdict": "benign"}]
    classes = classify_for_salvage(findings, [evil, look_alike, b"/srv/www/up/notes.txt", b"/srv/www/up/bad/x",
                                              b"/srv/www/up", b"/srv/www/up/old.txt", b"/srv/www/up/badx"])
    assert classes == {
        evil: "indicator",
        look_alike: UNCLASSIFIED,
        b"/srv/www/up/notes.txt": "suspicious",
        b"/srv/www/up/bad/x": BELOW_INDICATOR,
        b"/srv/www/up": HOLDS_INDICATOR,
        b"/srv/www/up/old.txt": UNCLASSIFIED,  # journaled without exact bytes: vouches for nothing
        b"/srv/www/up/badx": UNCLASSIFIED,
    }


def test_an_indicator_is_not_downgraded_by_a_later_finding() -> None:
    findings = [journaled(b"/srv/www/a", "indicator"), journaled(b"/srv/www/a", "benign")]
    assert classify_for_salvage(findings, [b"/srv/www/a"]) == {b"/srv/www/a": "indicator"}


def test_findings_may_be_objects_and_come_straight_from_triage() -> None:
    (found,) = triage(parse_diff(diff_line("+", "F", b"/srv/www/cgi-bin/x.cgi")).changes)
    assert classify_for_salvage([found], [b"/srv/www/cgi-bin/x.cgi"]) == {b"/srv/www/cgi-bin/x.cgi": "indicator"}


@pytest.mark.parametrize("bad", [{"path_b64": "!!", "verdict": "benign"}, {"path_b64": 5, "verdict": "benign"},
                                 {"path_b64": base64.b64encode(b"/a").decode(), "verdict": 3}])
def test_broken_findings_vouch_for_nothing(bad: dict[str, object]) -> None:
    assert classify_for_salvage([bad], [b"/a"]) == {b"/a": UNCLASSIFIED}


def test_refusals_name_every_path_that_needs_force_inertly() -> None:
    classes = {b"/srv/www/\x1b[2Jx": "indicator", b"/srv/www/ok": "benign", b"/srv/www/s": "suspicious",
               b"/srv/www/u": UNCLASSIFIED, b"/srv/www/d": HOLDS_INDICATOR, b"/srv/www/d/x": BELOW_INDICATOR}
    reasons = refusals(classes)
    assert len(reasons) == 4 and all("\x1b" not in r for r in reasons)
    assert reasons[0].startswith("/srv/www/\\x1b[2Jx is an indicator")
    assert refusals({b"/srv/www/ok": "benign", b"/srv/www/s": "suspicious"}) == []


# --- the copy itself, run by a local shell with a directory standing in for the mounted evidence -----


def run_copy(evidence: Path, mountpoint: Path, path: str) -> subprocess.CompletedProcess[bytes]:
    script = "\n".join(["set -e", f"d={evidence}", *copy_commands(str(mountpoint), path)])
    return subprocess.run(["sh", "-c", script], capture_output=True, timeout=30)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    evidence, live, outside = tmp_path / "evidence", tmp_path / "www", tmp_path / "outside"
    for d in (evidence, live, outside):
        d.mkdir()
    return evidence, live, outside


def test_setuid_and_setgid_bits_are_never_copied(trees: tuple[Path, Path, Path]) -> None:
    evidence, live, _ = trees
    (evidence / "dir").mkdir()
    (evidence / "dir" / "tool").write_bytes(b"#!/bin/sh\n")
    (evidence / "dir" / "tool").chmod(0o6755)
    (evidence / "dir").chmod(0o2755)
    assert run_copy(evidence, live, f"{live}/dir").returncode == 0
    assert stat.S_IMODE((live / "dir" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((live / "dir").stat().st_mode) == 0o755


def test_symlink_is_copied_as_a_link_never_followed(trees: tuple[Path, Path, Path]) -> None:
    evidence, live, outside = trees
    (outside / "secret").write_bytes(b"host secret")
    (evidence / "link").symlink_to(outside / "secret")
    assert run_copy(evidence, live, f"{live}/link").returncode == 0
    assert (live / "link").is_symlink() and os.readlink(live / "link") == str(outside / "secret")


def test_symlinked_directory_in_the_evidence_is_refused(trees: tuple[Path, Path, Path]) -> None:
    """``uploads -> /etc`` in the evidence must not turn a salvage of uploads/shadow into a copy of /etc/shadow."""
    evidence, live, outside = trees
    (outside / "shadow").write_bytes(b"root:hash")
    (evidence / "uploads").symlink_to(outside)
    proc = run_copy(evidence, live, f"{live}/uploads/shadow")
    assert proc.returncode != 0 and not (live / "uploads").exists()


def test_symlink_in_the_restored_tree_is_not_written_through(trees: tuple[Path, Path, Path]) -> None:
    evidence, live, outside = trees
    (outside / "target").write_bytes(b"untouched")
    (evidence / "page.html").write_bytes(b"salvaged")
    (live / "page.html").symlink_to(outside / "target")
    (live / "sub").symlink_to(outside)
    (evidence / "sub").mkdir()
    (evidence / "sub" / "f").write_bytes(b"x")
    assert run_copy(evidence, live, f"{live}/page.html").returncode == 0
    assert (live / "page.html").read_bytes() == b"salvaged" and not (live / "page.html").is_symlink()
    assert (outside / "target").read_bytes() == b"untouched"
    assert run_copy(evidence, live, f"{live}/sub/f").returncode != 0 and not (outside / "f").exists()


@pytest.mark.parametrize("name", ["a b", "-rf", "x\ny", "$(touch pwned)", "'; touch pwned; '", "`id`", "*"])
def test_hostile_names_are_copied_literally(trees: tuple[Path, Path, Path], name: str) -> None:
    evidence, live, _ = trees
    (evidence / name).write_bytes(b"data")
    assert run_copy(evidence, live, f"{live}/{name}").returncode == 0
    assert sorted(os.listdir(live)) == [name] and (live / name).read_bytes() == b"data"
