"""The served agent: one process per session answers framed requests through two FIFOs on tmpfs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery.zfs import agent, client
from recovery.zfs.client import AgentClient, AgentError, AgentReplyError, build_request, start_command
from recovery.zfs.pipeline import side_by_side
from tests.unit.test_zfs_client import LocalShell, fake_zfs  # noqa: F401 - the fixture is used by name


@pytest.fixture
def served(fake_zfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentClient]:
    """A served client on a local shell; its agent is stopped at the end, pass or fail."""
    monkeypatch.setattr(client, "SERVE_ROOT", str(tmp_path))
    agent_client = AgentClient(LocalShell(noise=True), python=sys.executable, zfs=str(fake_zfs), timeout=60,
                               served=True)
    try:
        yield agent_client
    finally:
        agent_client.stop()


def server_dir(tmp_path: Path) -> Path:
    (directory,) = tmp_path.glob("recovery-agent-*")
    return directory


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_one_process_answers_every_call_through_the_noise(served: AgentClient, tmp_path: Path) -> None:
    for _ in range(3):
        assert served.ping()["agent"] == 1
    assert served.list_datasets(root="tank/www")[0].name == "tank/www"
    commands = served.transport.commands  # type: ignore[attr-defined]
    assert sum(client.STARTED in c for c in commands) == 1 and len(commands) == 5
    assert all(" -I -c " not in c for c in commands[1:])  # no new python3 per call
    directory = server_dir(tmp_path)
    assert {p.name for p in directory.iterdir()} == {"req", "rep", "pid"}
    assert oct(directory.stat().st_mode & 0o777) == "0o700"


def test_a_server_that_is_gone_is_started_again(served: AgentClient, tmp_path: Path) -> None:
    served.ping()
    first = server_dir(tmp_path)
    pid = int((first / "pid").read_text())
    os.kill(pid, 9)  # the agent this test started
    while alive(pid):
        time.sleep(0.01)
    assert served.ping()["agent"] == 1
    assert len(list(tmp_path.glob("recovery-agent-*"))) == 2


def test_stop_ends_the_agent_and_removes_its_directory(served: AgentClient, tmp_path: Path) -> None:
    served.ping()
    pid = int((server_dir(tmp_path) / "pid").read_text())
    served.stop()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(pid) and list(tmp_path.glob("recovery-agent-*")) == []


def test_an_agent_that_does_not_start_is_a_clear_error(fake_zfs: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "SERVE_ROOT", str(tmp_path / "missing"))
    with pytest.raises(AgentReplyError, match="the agent did not start"):
        AgentClient(LocalShell(noise=False), python=sys.executable, zfs=str(fake_zfs), served=True).ping()


def test_the_server_idles_out_and_answers_a_bad_line_without_dying(tmp_path: Path) -> None:
    directory = tmp_path / "recovery-agent-x"
    started = subprocess.run(["sh", "-c", start_command(str(directory), sys.executable, idle=1.5)],
                             capture_output=True, timeout=30)
    assert started.stdout.strip() == f"{client.STARTED} {directory}".encode()
    pid = int((directory / "pid").read_text())

    def ask(line: bytes) -> bytes:
        with open(directory / "req", "wb") as req:
            req.write(line + b"\n")
        return (directory / "rep").read_bytes()

    assert ask(b"not base64 of json") == agent.BAD_REQUEST
    request = {"v": agent.VERSION, "nonce": "ab" * 16, "op": "ping", "args": {}, "zfs": None}
    reply = client.extract_reply(ask(base64.b64encode(json.dumps(request).encode())), "ab" * 16)
    assert reply["ok"] is True
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)  # nobody asked for 1.5 s


@pytest.mark.parametrize("mode", ["one call", "served", "batched"])
def test_the_lab_rootkit_lies_to_the_agent_either_way(mode: str, fake_zfs: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The rootkit scenario's python3 must fool a served agent, and each request of a batch, as it
    fools one call, or the rehearsal through single-user mode would stop showing why the rescue
    image is the default."""
    wrapper = tmp_path / "python3"
    wrapper.write_bytes((Path(agent.__file__).parents[1] / "lab/files/rootkit-python3.py").read_bytes())
    wrapper.chmod(0o755)
    monkeypatch.setenv("LAB_ROOTKIT_HIDE", "/var/log/syslog")
    monkeypatch.setattr(client, "SERVE_ROOT", str(tmp_path))
    liar = AgentClient(LocalShell(noise=False), python=str(wrapper), zfs=str(fake_zfs), served=mode != "one call")
    honest = AgentClient(LocalShell(noise=False), python=sys.executable, zfs=str(fake_zfs))
    try:
        times = 3 if mode == "batched" else 1
        diffs = side_by_side(lambda _: liar.diff_changes("tank/www@golden", "tank/www"), range(times))
    finally:
        liar.stop()
    (seen,) = {tuple(c.path for c in diff.changes) for diff in diffs}
    if mode == "batched":  # besides the agent's start and stop, fewer round trips than diffs: a batch
        assert len(liar.transport.commands) < 2 + times  # type: ignore[attr-defined]
    everything = [c.path for c in honest.diff_changes("tank/www@golden", "tank/www").changes]
    assert b"/var/log/syslog" in everything and list(seen) == [p for p in everything if p != b"/var/log/syslog"]


# -- threads on one client: their calls share round trips (recovery.zfs.pipeline) --------------------


def test_threads_on_one_client_share_round_trips_and_each_gets_its_own_answer(served: AgentClient) -> None:
    served.ping()  # the server is up: what follows is the pipelining alone
    before = len(served.transport.commands)  # type: ignore[attr-defined]
    names = side_by_side(lambda root: [d.name for d in served.list_datasets(root=root)],
                         ["tank/www", "tank/www", "tank/www", "tank/www"] * 2)
    assert all(n and n[0] == "tank/www" for n in names)
    trips = len(served.transport.commands) - before  # type: ignore[attr-defined]
    assert trips < 8, f"{trips} round trips for 8 calls made side by side"


def test_one_failing_request_of_a_batch_fails_only_its_caller(served: AgentClient) -> None:
    served.ping()

    def ask(op: str) -> object:
        try:
            return served.call(op)
        except AgentError as exc:
            return exc

    answers = side_by_side(ask, ["ping", "no-such-op", "ping", "ping"])
    assert [type(a).__name__ for a in answers] == ["dict", "AgentError", "dict", "dict"]


def test_a_batch_whose_replies_do_not_match_their_requests_is_refused(served: AgentClient,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = served._round_trip

    def swapped(request: dict) -> dict:
        reply = real(request)
        if request["op"] == "batch":
            reply["result"]["replies"].reverse()
        return reply

    monkeypatch.setattr(served, "_round_trip", swapped)
    requests = [build_request("ping", {}, n * 16, None) for n in ("a", "b")]
    with pytest.raises(AgentReplyError, match="does not match its request"):
        served._exchange(requests)
