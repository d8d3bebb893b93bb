"""Whole runs through the `recover` CLI against real sshd hosts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.project import recover, write_inventory

pytestmark = pytest.mark.integration


def run_id_of(runs: Path) -> str:
    (only,) = [p.name for p in runs.iterdir()]
    return only


def test_one_host_fails_the_others_finish(sshd_factory, tmp_path):
    hosts = [sshd_factory(n) for n in ("h1", "h2", "h3")]
    write_inventory(tmp_path / "inventory.toml", hosts)
    (tmp_path / "pb.toml").write_text("""
[order]
serial = 3
[[steps]]
kind = "run"
name = "probe"
params = { command = "echo ok" }
[[steps]]
kind = "run"
name = "maybe-fail"
params = { command = "case $SSH_CONNECTION in *' PORT_H2') exit 7;; esac; echo fine" }
[[steps]]
kind = "run"
name = "after"
params = { command = "echo after" }
""".replace("PORT_H2", str(hosts[1].port)))
    done = recover("web", "--inventory", "inventory.toml", "--playbook", "pb.toml",
                   "--runs-dir", "runs", "--yes", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    status = recover("status", "--runs-dir", "runs", "--json", cwd=tmp_path)
    rows = {(r["step"], r["host"]): r["state"] for r in json.loads(status.stdout)["steps"]}
    assert rows[("maybe-fail", "h2")] == "failed"
    assert rows[("after", "h2")] == "pending"  # skip-host: h2 stops, the others go on
    assert rows[("after", "h1")] == rows[("after", "h3")] == "done"
    assert "exit code 7 (expected 0)" in done.stdout


def test_kill_9_then_resume_applies_no_step_twice(sshd_factory, tmp_path):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    counter = tmp_path / "counter"
    steps = "".join(f"""
[[steps]]
kind = "run"
name = "s{i}"
params = {{ command = "sleep 0.4; echo s{i} >> {counter} && touch {tmp_path}/done-s{i}", unless = "test -e {tmp_path}/done-s{i}" }}
""" for i in range(1, 9))
    (tmp_path / "pb.toml").write_text(steps)
    proc = subprocess.Popen([sys.executable, "-m", "recovery", "h1", "--inventory", "inventory.toml",
                             "--playbook", "pb.toml", "--runs-dir", "runs", "--yes"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_succeeded(tmp_path / "runs", at_least=3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    run_id = run_id_of(tmp_path / "runs")
    interrupted = recover("status", run_id, "--runs-dir", "runs", "--json", cwd=tmp_path)
    states = [r["state"] for r in json.loads(interrupted.stdout)["steps"]]
    assert "pending" in states or "in-flight" in states
    resumed = recover("resume", run_id, "--runs-dir", "runs", "--yes", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lines = counter.read_text().split()
    assert sorted(lines) == [f"s{i}" for i in range(1, 9)]  # every step exactly once
    verify = recover("journal", "verify", run_id, "--runs-dir", "runs", cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr


def _wait_for_succeeded(runs: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for db in runs.glob("*/journal.sqlite"):
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    count = conn.execute(
                        "SELECT count(*) FROM records WHERE event='step_succeeded'").fetchone()[0]
            except sqlite3.Error:
                continue
            if count >= at_least:
                time.sleep(0.2)  # into the sleep of the next step: it is in flight
                return
        time.sleep(0.05)
    raise AssertionError("the run did not progress")


def test_in_flight_step_without_check_waits_for_the_operator(sshd_factory, tmp_path):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    (tmp_path / "pb.toml").write_text("""
[[steps]]
kind = "run"
name = "fast"
params = { command = "true" }
[[steps]]
kind = "run"
name = "slow"
params = { command = "sleep 3" }
""")
    proc = subprocess.Popen([sys.executable, "-m", "recovery", "h1", "--inventory", "inventory.toml",
                             "--playbook", "pb.toml", "--runs-dir", "runs", "--yes"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_succeeded(tmp_path / "runs", at_least=1)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    run_id = run_id_of(tmp_path / "runs")
    resumed = recover("resume", run_id, "--runs-dir", "runs", "--yes", cwd=tmp_path)
    assert resumed.returncode == 5, resumed.stdout
    assert f"recover retry {run_id} --host h1 --step slow" in " ".join(resumed.stdout.split())
    skipped = recover("skip", run_id, "--host", "h1", "--step", "slow", "--runs-dir", "runs",
                      "--yes", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    retried = recover("retry", run_id, "--host", "h1", "--step", "fast", "--runs-dir", "runs",
                      "--yes", cwd=tmp_path)
    assert retried.returncode == 2 and "is done, not failed" in retried.stderr


def test_secret_never_stored_or_printed(sshd_factory, tmp_path):
    secret = "s3cr3t-Value-9f8e7d"
    secret_file = tmp_path / "root-password"
    secret_file.write_text(secret + "\n")
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    inv = (tmp_path / "inventory.toml").read_text().replace(
        'role = "web"', f'role = "web"\nroot_password = "file:{secret_file}"', 1)
    (tmp_path / "inventory.toml").write_text(inv)
    (tmp_path / "pb.toml").write_text(f"""
[[steps]]
kind = "run"
name = "leak-stdout"
params = {{ command = "cat {secret_file}" }}
[[steps]]
kind = "run"
name = "leak-stderr"
on_failure = "continue"
params = {{ command = "cat {secret_file} >&2; exit 1" }}
""")
    result = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml",
                     "--runs-dir", "runs", "--yes", cwd=tmp_path)
    assert result.returncode == 1
    status = recover("status", "--runs-dir", "runs", "--json", cwd=tmp_path)
    assert "***" in result.stdout
    for text in (result.stdout, result.stderr, status.stdout):
        assert secret not in text
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_without_tty_and_without_yes_refuses(sshd_factory, tmp_path):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    (tmp_path / "pb.toml").write_text('[[steps]]\nkind = "run"\nparams = { command = "true" }\n')
    result = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml",
                     "--runs-dir", "runs", cwd=tmp_path)
    assert result.returncode == 3
    assert "stdin is not a terminal; pass --yes" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_every_run_ends_with_a_report(sshd_factory, tmp_path):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    (tmp_path / "pb.toml").write_text("""
[[steps]]
kind = "run"
name = "hostile-output"
params = { command = "printf '<script>alert(1)</script>\\\\033[2J'; exit 3" }
""")
    result = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml",
                     "--runs-dir", "runs", "--yes", cwd=tmp_path)
    assert result.returncode == 1
    run_dir = next((tmp_path / "runs").iterdir())
    markdown = (run_dir / "report.md").read_text()
    assert "| h1 | failed at hostile-output: exit code 3 (expected 0)" in markdown
    assert "chain intact" in markdown
    html = (run_dir / "report.html").read_text()
    assert "<script>" not in html and "\x1b" not in html
    assert "<rect" in (run_dir / "timeline.svg").read_text()
    again = recover("report", run_dir.name, "--runs-dir", "runs", cwd=tmp_path)
    assert again.returncode == 0 and "report.html" in again.stdout


def test_a_keyed_journal_needs_its_key_and_a_deleted_journal_is_broken(sshd_factory, tmp_path):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    (tmp_path / "pb.toml").write_text('[[steps]]\nkind = "run"\nparams = { command = "true" }\n')
    (tmp_path / "journal.key").write_text("operator-journal-key-1\n")
    keyed = {"RECOVERY_JOURNAL_KEY": f"file:{tmp_path / 'journal.key'}"}
    done = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs", "--yes",
                   cwd=tmp_path, env=keyed)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = run_id_of(tmp_path / "runs")
    run_dir = tmp_path / "runs" / run_id
    assert all(p.stat().st_mode & 0o077 == 0 for p in [run_dir, *run_dir.rglob("*")]), "run store not private"
    verified = recover("journal", "verify", run_id, "--runs-dir", "runs", cwd=tmp_path, env=keyed)
    assert verified.returncode == 0 and "keyed (HMAC-SHA256)" in verified.stdout
    without = recover("journal", "verify", run_id, "--runs-dir", "runs", cwd=tmp_path,
                      env={"RECOVERY_JOURNAL_KEY": ""})
    assert without.returncode == 2 and "has a keyed journal: set RECOVERY_JOURNAL_KEY" in without.stderr
    assert b"operator-journal-key-1" not in b"".join(p.read_bytes() for p in (tmp_path / "runs").rglob("*")
                                                     if p.is_file())
    (tmp_path / "runs" / run_id / "journal.sqlite").unlink()
    deleted = recover("journal", "verify", run_id, "--runs-dir", "runs", cwd=tmp_path, env=keyed)
    assert deleted.returncode == 6 and "journal.sqlite is missing" in deleted.stderr


def test_a_retried_host_is_weighed_again_by_the_run_steps_after_it(sshd_factory, tmp_path):
    """`return` and the sweep decide about every host once; a host brought back by `recover retry`
    must be weighed again, or it would stay out of rotation for good."""
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    marker = tmp_path / "second-attempt"
    (tmp_path / "pb.toml").write_text(f"""
[[steps]]
kind = "run"
name = "flaky"
params = {{ command = "test -e {marker} || {{ touch {marker}; exit 1; }}" }}
[[steps]]
kind = "message"
name = "decide"
params = {{ text = "weighing every host" }}
""")
    first = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                    "--yes", cwd=tmp_path)
    assert first.returncode == 1, first.stdout
    run_id = run_id_of(tmp_path / "runs")
    retried = recover("retry", run_id, "--host", "h1", "--step", "flaky", "--runs-dir", "runs", "--yes",
                      cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    status = json.loads(recover("status", run_id, "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    db = sqlite3.connect(next((tmp_path / "runs").glob("*/journal.sqlite")))
    decided = db.execute("SELECT count(*) FROM records WHERE event = 'step_succeeded' AND step = 'decide'")
    assert decided.fetchone()[0] == 2  # once before the retry, once after it
    reopened = db.execute("SELECT data FROM records WHERE event = 'retry_requested' AND step = 'decide'")
    assert "'flaky' on h1 goes again" in reopened.fetchone()[0]
    assert status["status"] == "done"
