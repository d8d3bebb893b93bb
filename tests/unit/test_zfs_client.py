"""Agent client: framing against hostile noise, and the wire format end to end with a fake zfs."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.transport.channel import ChannelClosed
from recovery.transport.result import Result
from recovery.zfs import agent
from recovery.zfs.client import (
    AgentClient,
    AgentError,
    AgentReplyError,
    build_request,
    command_for,
    extract_reply,
    inflate,
    snapshot_view,
)
from recovery.zfs.diff import parse_diff
from recovery.zfs.triage import Verdict, triage
from tests.support.zfs_output import diff_line

NONCE = "0123456789abcdef" * 2
OTHER = "fedcba9876543210" * 2


def framed(result: dict, nonce: str = NONCE) -> bytes:
    return agent.frame({"v": 1, "nonce": nonce, "ok": True, "result": result}, nonce)


def test_reply_inside_noise() -> None:
    noise = b"\x1b[?2004hroot@web1:~# \r\n[   12.345678] zfs: module loaded\n\xff\xfe garbage"
    output = noise + framed({"x": 1}) + b"\x1b]0;title\x07 trailing noise without newline"
    assert extract_reply(output, NONCE)["result"] == {"x": 1}


def test_noise_lines_inside_the_frame_are_skipped() -> None:
    lines = framed({"blob": "A" * 5000}).split(b"\n")
    noisy = b"\n".join(line + b"\n[  99.000001] kernel: eth0 link up\r" for line in lines)
    assert extract_reply(noisy, NONCE)["result"] == {"blob": "A" * 5000}


def test_crlf_line_endings_from_a_console() -> None:
    assert extract_reply(framed({"a": 1}).replace(b"\n", b"\r\n"), NONCE)["result"] == {"a": 1}


def test_garbled_chunk_is_an_error_not_a_guess() -> None:
    lines = framed({"blob": "B" * 3000}).split(b"\n")
    lines[3] = lines[3][:40] + b"[  5.1] usb 1-1: new device" + lines[3][40:]
    with pytest.raises(AgentReplyError, match="missing"):
        extract_reply(b"\n".join(lines), NONCE)


def test_tampered_chunk_fails_the_hash() -> None:
    output = framed({"blob": "C" * 100})
    head, _, tail = output.partition(b" 0 ")
    tampered = head + b" 0 " + (b"D" if tail[:1] != b"D" else b"E") + tail[1:]
    with pytest.raises(AgentReplyError, match="sha256"):
        extract_reply(tampered, NONCE)


def test_wrong_nonce_is_rejected() -> None:
    with pytest.raises(AgentReplyError, match="another nonce"):
        extract_reply(framed({"x": 1}, OTHER), NONCE)


def test_stale_frame_next_to_ours_is_ignored() -> None:
    output = framed({"stale": True}, OTHER) + framed({"fresh": True})
    assert extract_reply(output, NONCE)["result"] == {"fresh": True}


def test_two_frames_with_our_nonce_are_ambiguous() -> None:
    with pytest.raises(AgentReplyError, match="repeated"):
        extract_reply(framed({"a": 1}) + framed({"a": 2}), NONCE)


def test_size_cap() -> None:
    with pytest.raises(AgentReplyError, match="exceeds the cap"):
        extract_reply(framed({"blob": "x" * 2000}), NONCE, max_reply=1000)


def test_no_frame_at_all() -> None:
    with pytest.raises(AgentReplyError, match="no agent reply"):
        extract_reply(b"bash: python3: command not found\n", NONCE)


def test_forged_body_nonce_is_rejected() -> None:
    body = {"v": 1, "nonce": OTHER, "ok": True, "result": {}}
    with pytest.raises(AgentReplyError, match="does not match"):
        extract_reply(agent.frame(body, NONCE), NONCE)


@settings(max_examples=200)
@given(st.binary(max_size=200), st.binary(max_size=200), st.dictionaries(st.text(max_size=5), st.text(max_size=20)))
def test_any_noise_around_the_frame(before: bytes, after: bytes, result: dict) -> None:
    assert extract_reply(before + framed(result) + after, NONCE)["result"] == result


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_arbitrary_output_never_crashes(output: bytes) -> None:
    with pytest.raises(AgentReplyError):
        extract_reply(output, NONCE)


def test_command_carries_no_marker_or_nonce_in_clear() -> None:
    """A console echoes the command: the echo must never look like a reply."""
    command = command_for(build_request("ping", {}, NONCE), python="python3")
    assert "RECOVERY-AGENT-REPLY" not in command and NONCE not in command
    # the packed agent rides along on every start over a console: a budget, raised only with what it does
    assert command.startswith("python3 -I -c ") and len(command) < 15500


def test_inflate_refuses_bombs_and_corruption() -> None:
    bomb = zlib.compress(b"\0" * 10_000_000)
    with pytest.raises(AgentReplyError, match="beyond 1000"):
        inflate(bomb, 1000)
    with pytest.raises(AgentReplyError, match="corrupt"):
        inflate(b"not zlib", 1000)
    with pytest.raises(AgentReplyError, match="truncated"):
        inflate(zlib.compress(b"abc" * 100)[:-5], 1000)
    assert inflate(zlib.compress(b"abc"), 3) == b"abc"


def test_oversized_request_is_refused_before_it_reaches_the_host() -> None:
    with pytest.raises(ValueError, match="too large"):
        command_for(build_request("lstat", {"paths": ["QUFB" * 40_000]}, NONCE))


def test_snapshot_view() -> None:
    assert snapshot_view(b"/srv/www", "tank/www@s1", b"/srv/www/cgi-bin/x") == b"/srv/www/.zfs/snapshot/s1/cgi-bin/x"
    assert snapshot_view(b"/", "tank/root@s1", b"/etc/passwd") == b"/.zfs/snapshot/s1/etc/passwd"
    with pytest.raises(ValueError):
        snapshot_view(b"/srv/www", "tank/www@s1", b"/srv/wwwx/y")


# --- end to end: the real agent, run by a local python3, with a fake zfs ----

HOSTILE = b"/srv/www/cgi-bin/\x1b[2Jx\n.cgi"

FAKE_ZFS = r'''#!{python}
"""Stand-in for zfs: canned output in the exact shapes the real one prints."""
import sys
args = sys.argv[1:]
out = sys.stdout.buffer
log = open({log!r}, "a")
log.write(" ".join(args) + "\n")
if args[0] == "list":
    out.write(b"tank/www\tfilesystem\t42\t15\t1700000100\t524288\t-\t/srv/www\n"
              b"tank/www@golden\tsnapshot\t43\t20\t1700000200\t0\t-\t-\n")
elif args[0] == "get":
    out.write(b"tank/www\treadonly\toff\tdefault\n")
elif args[0] == "diff":
    sys.stderr.write("[ 1.0] kernel noise on stderr\n")
    out.write({diff!r})
elif args[0] in ("set", "rename") and "tank/missing" not in args:
    pass
else:
    sys.stderr.write("cannot open 'tank/missing': dataset does not exist\n")
    sys.exit(1)
'''


class LocalShell:
    """A transport that runs the command in a local shell and sprinkles noise into stdout."""

    def __init__(self, noise: bool = True) -> None:
        self.noise = noise
        self.commands: list[str] = []
        self.channels: list[LocalChannel] = []

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if self.noise:
            command = (
                "printf '\\033[?2004hroot@web1:~# motd\\n'; "
                f"{command} | awk '{{print; if (NR % 2 == 0) print \"[  12.3] kernel: noise\"}}'; "
                "printf 'trailing\\033[0m'"
            )
        start = time.monotonic()
        proc = subprocess.run(["sh", "-c", command], capture_output=True, timeout=timeout)
        return Result(proc.stdout, proc.stderr, proc.returncode, time.monotonic() - start)

    def open_channel(self, command: str, farewell: bytes) -> LocalChannel:
        self.commands.append(command)
        self.channels.append(LocalChannel(command, farewell, self.noise))
        return self.channels[-1]

    @property
    def lines(self) -> list[bytes]:
        """Every request line sent on any channel: one per round trip."""
        return [line for channel in self.channels for line in channel.sent if line != channel.farewell]


class LocalChannel:
    """A local process on pipes; with ``noise``, a line of it between lines (the host's other output)."""

    def __init__(self, command: str, farewell: bytes, noise: bool) -> None:
        self.process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.farewell, self.noise = farewell, noise
        self.sent: list[bytes] = []
        self._line_start = True

    @property
    def closed(self) -> bool:
        return self.process.poll() is not None

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ChannelClosed("local: ended")
        self.sent.append(data)
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def receive(self, timeout: float) -> bytes:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return b""
        data = os.read(self.process.stdout.fileno(), 65536)
        if not data:
            raise ChannelClosed("local: ended")
        noise = b"\x1b[?2004h[  12.3] kernel: noise\n" if self.noise and self._line_start else b""
        self._line_start = data.endswith(b"\n")
        return noise + data

    def close(self) -> None:
        try:
            if not self.closed:
                self.send(self.farewell)
        except (ChannelClosed, BrokenPipeError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def fake_zfs(tmp_path: Path) -> Path:
    diff = diff_line("+", "F", HOSTILE) + diff_line("M", "F", b"/var/log/syslog")
    path = tmp_path / "zfs"
    path.write_text(FAKE_ZFS.format(python=sys.executable, log=str(tmp_path / "zfs.log"), diff=diff))
    path.chmod(0o755)
    return path


def client_for(fake_zfs: Path, noise: bool = True) -> AgentClient:
    return AgentClient(LocalShell(noise), python=sys.executable, zfs=str(fake_zfs), timeout=60)


def test_end_to_end_list_get_set_rename(fake_zfs: Path) -> None:
    client = client_for(fake_zfs)
    datasets = client.list_datasets(root="tank/www")
    assert [(d.name, d.guid, d.createtxg, d.mountpoint) for d in datasets] == [
        ("tank/www", 42, 15, "/srv/www"), ("tank/www@golden", 43, 20, None)
    ]
    assert client.get(["tank/www"], ["readonly"]) == [
        {"name": "tank/www", "property": "readonly", "value": "off", "source": "default"}
    ]
    client.set("tank/www", {"readonly": "on", "canmount": "off"})
    client.rename("tank/www", "tank/www.quarantine-r1")
    log = (fake_zfs.parent / "zfs.log").read_text().splitlines()
    assert log[0].startswith("list -Hp -o name,type,guid,createtxg,creation,used,origin,mountpoint -t ")
    assert log[0].endswith(" -r tank/www")
    assert "set readonly=on canmount=off tank/www" in log  # one process for both
    assert "rename tank/www tank/www.quarantine-r1" in log  # no libzfs_core here: the CLI renames


def test_end_to_end_diff_keeps_every_byte(fake_zfs: Path) -> None:
    output = client_for(fake_zfs).diff("tank/www@golden", "tank/www")
    findings = triage(parse_diff(output).changes)
    assert [(f.path, f.verdict) for f in findings] == [(HOSTILE, Verdict.INDICATOR), (b"/var/log/syslog", Verdict.CHURN)]


def test_end_to_end_zfs_failure_is_a_clear_error(fake_zfs: Path) -> None:
    with pytest.raises(AgentError) as caught:
        client_for(fake_zfs, noise=False).rename("tank/missing", "tank/other")
    assert caught.value.op == "rename" and caught.value.dataset == "tank/missing"
    assert "dataset does not exist" in str(caught.value)


def test_end_to_end_hostile_ping_environment(fake_zfs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``python3 -I`` ignores PYTHONPATH / PYTHONSTARTUP a compromised account may set."""
    (tmp_path / "json.py").write_text("raise SystemExit('hijacked')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = client_for(fake_zfs).ping()
    assert result["agent"] == 1 and "python" in result


def test_end_to_end_modes_in_snapshot(fake_zfs: Path, tmp_path: Path) -> None:
    """Modes come from the snapshot's view of the dataset, keyed by the diff's own paths."""
    mountpoint = tmp_path / "www"
    inside = mountpoint / ".zfs" / "snapshot" / "s1" / "cgi-bin"
    inside.mkdir(parents=True)
    (inside / "x.cgi").write_bytes(b"#!/bin/sh\n")
    (inside / "x.cgi").chmod(0o4755)
    live = bytes(mountpoint) + b"/cgi-bin/x.cgi"
    modes = client_for(fake_zfs).modes_in_snapshot(bytes(mountpoint), "tank/www@s1", [live, live + b".gone"])
    assert list(modes) == [live] and modes[live] & 0o7777 == 0o4755


def test_many_paths_are_stat_in_batches(fake_zfs: Path, tmp_path: Path) -> None:
    paths = [bytes(tmp_path / f"file-{i:05d}-{'x' * 60}") for i in range(3000)]
    for path in paths[:3]:
        Path(path.decode()).write_bytes(b"")
    client = client_for(fake_zfs, noise=False)
    modes = client.modes(paths)
    assert sorted(modes) == paths[:3]
    assert len(client.transport.commands) > 1  # type: ignore[attr-defined]
    assert all(len(c) < 131072 for c in client.transport.commands)  # type: ignore[attr-defined]


def test_missing_python_is_a_reply_error(fake_zfs: Path) -> None:
    client = AgentClient(LocalShell(noise=False), python="/nonexistent/python3", zfs=str(fake_zfs))
    with pytest.raises(AgentReplyError, match="no agent reply.*exit 127"):
        client.ping()


def test_request_reaches_the_agent_intact() -> None:
    request = build_request("lstat", {"paths": [base64.b64encode(b"/tmp").decode()]}, NONCE)
    proc = subprocess.run(["sh", "-c", command_for(request, sys.executable)], capture_output=True, timeout=60)
    reply = extract_reply(proc.stdout, NONCE)
    assert reply["ok"] is True and isinstance(reply["result"]["modes"][0], int)
    assert json.loads(json.dumps(reply)) == reply


def test_a_pool_altroot_is_asked_once_per_session() -> None:
    """Every step makes its own client; the altroot of an import lasts as long as the session."""
    from recovery.zfs.client import PoolState

    asked: list[str] = []

    class Counting(AgentClient):
        def pool(self, pool: str) -> PoolState:
            asked.append(pool)
            return PoolState(pool, None, "/mnt/host")

    session, after_a_boot = LocalShell(), LocalShell()
    assert Counting(session).altroot("rpool") == Counting(session).altroot("rpool") == "/mnt/host"
    assert asked == ["rpool"]
    Counting(session).altroot("tank")
    Counting(after_a_boot).altroot("rpool")
    assert asked == ["rpool", "tank", "rpool"]
