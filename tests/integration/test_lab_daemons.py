"""Lab servers leave nothing behind: their process is gone and their temp dir removed, even when start fails."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recovery.lab.bind import LabDns
from recovery.lab.daemon import LabError
from recovery.lab.haproxy import LabHaproxy
from recovery.lab.mirror import Mirror

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_ends_the_process_and_removes_the_temp_dir() -> None:
    with LabDns(["192.0.2.10"]) as server:
        pid, workdir = server.pid, server.workdir
        assert pid and workdir and workdir.is_dir()
    assert _gone(pid) and not workdir.exists() and server.pid is None


def test_failed_start_reports_the_log_and_cleans_up() -> None:
    balancer = LabHaproxy({"eu-web": "not an address"})
    with pytest.raises(LabError, match="haproxy exited with status") as failed:
        balancer.start()
    assert "eu-web" in str(failed.value)
    assert balancer.workdir is None and balancer.pid is None


def test_mirror_notice_is_escaped_and_temporary(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("known-good\n")
    with Mirror(site) as mirror:
        mirror.show_notice("<script>alert(1)</script> back soon")
        with pytest.raises(urllib.error.HTTPError) as notice:
            urllib.request.urlopen(mirror.url + "any/page", timeout=2)
        body = notice.value.read().decode()
        assert notice.value.code == 503 and notice.value.headers["Retry-After"]
        assert "&lt;script&gt;" in body and "<script>" not in body
        mirror.hide_notice()
        assert urllib.request.urlopen(mirror.url, timeout=2).read() == b"known-good\n"
