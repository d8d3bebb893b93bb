"""Journal records and notifications leave the machine as they happen: a real rsyslogd, a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.collectors import RSYSLOGD, Rsyslog, WebhookReceiver, start_rsyslog
from tests.support.project import write_inventory
from tests.support.sshd import Sshd, free_port

pytestmark = pytest.mark.integration

HOOK_KEY = "hook-key-Zq8\"\\é"  # quotes, a backslash and a non-ASCII letter: still masked everywhere
PLAYBOOK = """
[[steps]]
kind = "run"
name = "probe"
params = { command = "sleep PAUSE; echo ok" }
[[steps]]
kind = "run"
name = "breaks"
params = { command = "echo broken >&2; exit 3" }
"""
_SD = re.compile(r'^(\S+) \[journal@32473 run="([^"]+)" seq="(\d+)" hash="([0-9a-f]{64})" prev="([0-9a-f]{64})"\] (.*)$')


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    if not Path(RSYSLOGD).exists():
        pytest.fail("rsyslogd is not installed (apt-get install rsyslog)")
    daemon = start_rsyslog(tmp_path / "rsyslog")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    try:
        yield server
    finally:
        server.close()


def collectors(syslog_port: int, hook_url: str) -> str:
    return (f'[[collectors.syslog]]\naddress = "127.0.0.1"\nport = {syslog_port}\n'
            f'[[collectors.webhook]]\nurl = "{hook_url}"\nsecret = "env:HOOK_KEY"\n')


def start_run(tmp_path: Path, host: Sshd, extra: str, pause: float = 0) -> subprocess.Popen[str]:
    """A real `recover h1 --yes` in the background; its first step sleeps ``pause`` s, its second fails."""
    write_inventory(tmp_path / "inventory.toml", [host], extra)
    (tmp_path / "pb.toml").write_text(PLAYBOOK.replace("PAUSE", str(pause)))
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
    return subprocess.Popen([sys.executable, "-m", "recovery", "h1", "--inventory", "inventory.toml",
                             "--playbook", "pb.toml", "--runs-dir", "runs", "--yes"], cwd=tmp_path,
                            env={**os.environ, "HOOK_KEY": HOOK_KEY}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_run(tmp_path: Path, proc: subprocess.Popen[str]) -> tuple[Path, list[tuple]]:
    """Wait for the run (exit 1: the failing step, nothing else); its directory and journal rows."""
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, output
    (run_dir,) = (tmp_path / "runs").iterdir()
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        rows = db.execute("SELECT seq, event, data, prev, hash FROM records ORDER BY seq").fetchall()
    return run_dir, rows


def run_once(tmp_path: Path, host: Sshd, extra: str) -> tuple[float, list[tuple], Path]:
    """A whole run: seconds taken, the journal's rows, the run directory."""
    began = time.monotonic()
    run_dir, rows = finish_run(tmp_path, start_run(tmp_path, host, extra))
    return time.monotonic() - began, rows, run_dir


def test_every_record_and_head_arrives_in_rsyslog_as_it_happens(
        sshd_factory: Callable[[str], Sshd], tmp_path: Path, rsyslog: Rsyslog, receiver: WebhookReceiver) -> None:
    proc = start_run(tmp_path, sshd_factory("h1"), collectors(rsyslog.port, receiver.url), pause=2)
    early = rsyslog.wait_for(2)  # run_started and the first step_started, while that step still sleeps
    assert proc.poll() is None and [line.split()[0] for line in early[:2]] == ["run_started", "step_started"]
    run_dir, rows = finish_run(tmp_path, proc)
    head = (run_dir / "HEAD").read_text()
    received = [_SD.match(line) for line in rsyslog.wait_for(len(rows))]
    assert all(received), rsyslog.lines()
    shipped = [(int(m[3]), m[1], m[5], m[4]) for m in received]
    assert shipped == [(seq, event, prev, digest) for seq, event, _, prev, digest in rows]
    assert head.split() == [str(shipped[-1][0]), shipped[-1][3]]  # the newest head is off the machine
    for match, (seq, event, data, _, digest) in zip(received, rows):
        body = json.loads(match[6])
        assert (body["seq"], body["event"], body["hash"], body["data"]) == (seq, event, digest, json.loads(data))
    delivery = [json.loads(d) for _, e, d, _, _ in rows if e == "collector_delivery"]
    syslog = next(d for d in delivery if d["collector"].startswith("syslog"))
    assert syslog["dropped"] == 0 and syslog["delivered"] + syslog["pending"] == len(rows) - len(delivery)


def test_webhooks_are_signed_and_say_start_failure_and_end(sshd_factory: Callable[[str], Sshd], tmp_path: Path,
                                                           rsyslog: Rsyslog, receiver: WebhookReceiver) -> None:
    _, rows, run_dir = run_once(tmp_path, sshd_factory("h1"), collectors(rsyslog.port, receiver.url))
    bodies = []
    for got in receiver.received:
        expected = "sha256=" + hmac.new(HOOK_KEY.encode(), got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got.headers["X-Recovery-Signature"], expected)
        bodies.append(got.json())
    assert [b["event"] for b in bodies] == ["run_started", "host_failed", "run_finished"]
    failed = bodies[1]
    assert failed["record"]["host"] == "h1" and failed["record"]["step"] == "breaks"
    assert "exit code 3" in failed["summary"]
    by_seq = {seq: digest for seq, _, _, _, digest in rows}
    assert all(by_seq[b["journal_head"]["seq"]] == b["journal_head"]["hash"] for b in bodies)
    assert bodies[2]["record"]["data"]["status"] == "failed"
    report = (run_dir / "report.md").read_text()
    assert "(run time " in report  # what the collectors received, journaled after run_finished, ends nothing
    assert f"| webhook {receiver.url} | 3 | 0 | 0 |" in report
    for path in run_dir.iterdir():  # the key was resolved as a secret: masked in all the run writes
        assert HOOK_KEY.encode() not in path.read_bytes(), path


def test_a_collector_that_is_down_changes_neither_outcome_nor_duration(
        sshd_factory: Callable[[str], Sshd], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = sshd_factory("h1")
    baseline, plain, _ = run_once(tmp_path, host, "")
    closed = free_port()  # nothing listens there: every connection is refused
    took, rows, _ = run_once(tmp_path, host, collectors(closed, f"http://127.0.0.1:{closed}/hook"))
    events = [event for _, event, _, _, _ in rows]
    assert [e for e in events if not e.startswith("collector_")] == [e for _, e, _, _, _ in plain]
    down = [json.loads(d)["collector"] for _, e, d, _, _ in rows if e == "collector_unreachable"]
    assert sorted(down) == sorted({f"syslog 127.0.0.1:{closed}", f"webhook http://127.0.0.1:{closed}/hook"})
    delivered = {json.loads(d)["collector"]: json.loads(d) for _, e, d, _, _ in rows if e == "collector_delivery"}
    assert all(d["delivered"] == 0 for d in delivered.values())
    assert took < 10 and took - baseline < 3, (baseline, took)
    with capsys.disabled():
        print(f"\n  run without collectors {baseline:.2f} s, with both collectors down {took:.2f} s")
