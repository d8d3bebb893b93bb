import pytest

from recovery.engine.registry import StepFailed
from recovery.steps.verify import differences, newest_manifest


def test_changed_and_missing_are_reported_new_files_are_not():
    expected = {"/usr/sbin/zfs": "aa", "/usr/bin/python3": "bb", "/etc/x": "cc"}
    found = {b"/usr/sbin/zfs": "aa", b"/usr/bin/python3": "XX", b"/etc/new": "dd"}
    assert differences(expected, found) == ["/etc/x: missing", "/usr/bin/python3: changed"]


def test_a_missing_manifest_fails_the_step(tmp_path):
    with pytest.raises(StepFailed, match="capture one with `recover golden eu-web`"):
        newest_manifest(tmp_path, "eu-web")
