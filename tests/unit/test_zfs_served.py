"""The served agent: one process per session, on a channel of its own, answers framed request lines."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery.zfs import agent, served
from recovery.zfs.client import AgentClient, AgentError, AgentReplyError, build_request, extract_reply
from recovery.zfs.pipeline import side_by_side
from tests.unit.test_zfs_client import LocalShell, fake_zfs  # noqa: F401 - the fixture is used by name


@pytest.fixture
def served_client(fake_zfs: Path) -> Iterator[AgentClient]:
    """A served client on a local shell; its agent is stopped at the end, pass or fail."""
    agent_client = AgentClient(LocalShell(noise=True), python=sys.executable, zfs=str(fake_zfs), timeout=60,
                               served=True)
    try:
        yield agent_client
    finally:
        agent_client.stop()


def shell_of(client: AgentClient) -> LocalShell:
    assert isinstance(client.transport, LocalShell)
    return client.transport


def test_one_process_answers_every_call_through_the_noise(served_client: AgentClient) -> None:
    for _ in range(3):
        assert served_client.ping()["agent"] == 1
    assert served_client.list_datasets(root="tank/www")[0].name == "tank/www"
    shell = shell_of(served_client)
    (command,) = shell.commands  # one python3, started once
    assert " serve " in command and command.startswith(f"{sys.executable} -I -c ")
    assert len(shell.lines) == 4 and not shell.channels[0].closed


def test_an_agent_that_ended_is_started_again_before_anything_is_asked(served_client: AgentClient) -> None:
    served_client.ping()
    first = shell_of(served_client).channels[0]
    first.process.kill()  # the agent this test started
    first.process.wait()
    assert served_client.ping()["agent"] == 1
    assert len(shell_of(served_client).channels) == 2 and first.sent == first.sent[:1]


def test_an_agent_quiet_for_long_is_replaced_not_asked(served_client: AgentClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """It may be leaving just as the request arrives; on a console the shell would read the line."""
    served_client.ping()
    monkeypatch.setattr(served, "FRESH", 0.0)
    served_client.ping()
    first, second = shell_of(served_client).channels
    assert first.process.wait(10) == 0 and len(first.sent) == 2 and first.sent[1] == served.FAREWELL
    assert len(second.sent) == 1


def test_stop_ends_the_agent(served_client: AgentClient) -> None:
    served_client.ping()
    served_client.stop()
    (channel,) = shell_of(served_client).channels
    assert channel.process.wait(10) == 0 and channel.sent[-1] == served.FAREWELL


def test_an_agent_that_does_not_start_is_a_clear_error(fake_zfs: Path) -> None:
    with pytest.raises(AgentReplyError, match="the agent did not start: the agent's channel ended"):
        AgentClient(LocalShell(noise=False), python="/nonexistent/python3", zfs=str(fake_zfs), served=True).ping()


def test_a_reply_that_went_wrong_retires_its_agent(served_client: AgentClient) -> None:
    served_client.max_reply = 10  # every reply is now too large: refused, never guessed at
    with pytest.raises(AgentReplyError, match="exceeds the cap"):
        served_client.ping()
    served_client.max_reply = 1 << 20
    assert served_client.ping()["agent"] == 1
    first, _ = shell_of(served_client).channels
    assert first.process.wait(10) == 0  # asked to leave: what it sends next could be the old reply


def serving(idle: str = "30") -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, agent.__file__, "serve", "tok", idle],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"\n" and process.stdout.readline() == agent.SERVING + b" tok\n"
    return process


def ask(process: subprocess.Popen[bytes], line: bytes) -> None:
    assert process.stdin is not None
    process.stdin.write(line + b"\n")
    process.stdin.flush()


def test_the_agent_answers_and_idles_out() -> None:
    process = serving(idle="1.5")
    request = {"v": agent.VERSION, "nonce": "ab" * 16, "op": "ping", "args": {}, "zfs": None}
    ask(process, base64.b64encode(json.dumps(request).encode()))
    started = time.monotonic()
    assert process.wait(20) == 0  # nobody asked for 1.5 s
    assert time.monotonic() - started >= 1.0
    assert process.stdout is not None and extract_reply(process.stdout.read(), "ab" * 16)["ok"] is True


def test_a_line_that_is_not_a_request_makes_the_agent_leave() -> None:
    """On a console, a new session logging in after its predecessor died: the shell must get the line."""
    process = serving()
    ask(process, b"")  # an empty line is nothing
    ask(process, b"set +o emacs +o vi; stty -echo")
    assert process.wait(20) == 3
    assert process.stdout is not None and process.stdout.read() == b"\n" + agent.BAD_REQUEST + b"\n"


@pytest.mark.parametrize("mode", ["one call", "served", "batched"])
def test_the_lab_rootkit_lies_to_the_agent_either_way(mode: str, fake_zfs: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The rootkit scenario's python3 must fool a served agent (each of its requests side by side)
    and each request of a batch as it fools one call, or the rehearsal through single-user mode would
    stop showing why the rescue image is the default."""
    wrapper = tmp_path / "python3"
    wrapper.write_bytes((Path(agent.__file__).parents[1] / "lab/files/rootkit-python3.py").read_bytes())
    wrapper.chmod(0o755)
    monkeypatch.setenv("LAB_ROOTKIT_HIDE", "/var/log/syslog")
    liar = AgentClient(LocalShell(noise=False), python=str(wrapper), zfs=str(fake_zfs), served=mode == "served")
    honest = AgentClient(LocalShell(noise=False), python=sys.executable, zfs=str(fake_zfs))
    try:
        times = 1 if mode == "one call" else 3
        diffs = side_by_side(lambda _: liar.diff_changes("tank/www@golden", "tank/www"), range(times))
    finally:
        liar.stop()
    (seen,) = {tuple(c.path for c in diff.changes) for diff in diffs}
    if mode == "batched":  # fewer processes than diffs: a batch
        assert len(shell_of(liar).commands) < times
    everything = [c.path for c in honest.diff_changes("tank/www@golden", "tank/www").changes]
    assert b"/var/log/syslog" in everything and list(seen) == [p for p in everything if p != b"/var/log/syslog"]


def test_a_quick_call_is_answered_while_a_slow_one_is_under_way(served_client: AgentClient, fake_zfs: Path,
                                                                tmp_path: Path) -> None:
    """One agent, calls side by side: a ``zfs get`` does not wait behind another thread's long diff."""
    slow_zfs = tmp_path / "slow-zfs"
    slow_zfs.write_text(f"#!/bin/sh\nsleep 3\nexec {fake_zfs} \"$@\"\n")
    slow_zfs.chmod(0o755)
    slow = AgentClient(served_client.transport, python=sys.executable, zfs=str(slow_zfs), timeout=60, served=True)
    served_client.ping()
    finished: dict[str, float] = {}

    def call(which: str) -> None:
        if which == "slow":
            slow.list_datasets(root="tank/www")
        else:
            time.sleep(0.5)  # the slow one is under way
            served_client.list_datasets(root="tank/www")
        finished[which] = time.monotonic()

    side_by_side(call, ["slow", "quick"])
    assert finished["slow"] - finished["quick"] > 1.5
    assert len(shell_of(served_client).channels) == 1  # both clients of the session: one agent


def test_threads_on_a_client_without_an_agent_share_round_trips(fake_zfs: Path) -> None:
    """Without a served agent every round trip is a new python3: what threads ask at once goes in one
    batch (see recovery.zfs.pipeline), and each still gets its own answer."""
    one_shot = AgentClient(LocalShell(noise=True), python=sys.executable, zfs=str(fake_zfs), timeout=60)
    names = side_by_side(lambda root: [d.name for d in one_shot.list_datasets(root=root)], ["tank/www"] * 8)
    assert all(n and n[0] == "tank/www" for n in names)
    trips = len(shell_of(one_shot).commands)
    assert trips < 8, f"{trips} round trips for 8 calls made side by side"


def test_one_failing_request_of_a_batch_fails_only_its_caller(served_client: AgentClient) -> None:
    served_client.ping()

    def ask(op: str) -> object:
        try:
            return served_client.call(op)
        except AgentError as exc:
            return exc

    answers = side_by_side(ask, ["ping", "no-such-op", "ping", "ping"])
    assert [type(a).__name__ for a in answers] == ["dict", "AgentError", "dict", "dict"]


def test_a_batch_whose_replies_do_not_match_their_requests_is_refused(served_client: AgentClient,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = served_client._round_trip

    def swapped(request: dict) -> dict:
        reply = real(request)
        if request["op"] == "batch":
            reply["result"]["replies"].reverse()
        return reply

    monkeypatch.setattr(served_client, "_round_trip", swapped)
    requests = [build_request("ping", {}, n * 16, None) for n in ("a", "b")]
    with pytest.raises(AgentReplyError, match="does not match its request"):
        served_client._exchange(requests)
