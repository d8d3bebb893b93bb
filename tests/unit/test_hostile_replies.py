"""Agent replies from a compromised host: bounded memory, shapes checked, every failure an AgentReplyError."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from recovery.transport.result import Result
from recovery.zfs import agent
from recovery.zfs.client import AgentClient, AgentError, AgentReplyError, extract_reply
from tests.support.zfs_output import diff_line

NONCE = "0123456789abcdef" * 2


def mark(nonce: str = NONCE) -> bytes:
    return b"RECOVERY-AGENT-REPLY v1 " + nonce.encode()


def nonce_of(command: str) -> str:
    """The nonce of the request the client put in the command's last argument."""
    return json.loads(base64.b64decode(command.rsplit(" ", 1)[1]))["nonce"]


class Replying:
    """A transport whose host answers every command with ``reply(nonce)``."""

    name = "web1"

    def __init__(self, reply: Callable[[str], bytes]) -> None:
        self.reply = reply

    def run(self, command: str, timeout: float) -> Result:
        return Result(self.reply(nonce_of(command)), b"", 0, 0.0)


def answering(result: Any, ok: bool = True, **envelope: Any) -> AgentClient:
    """A client whose host replies with a well-framed body carrying ``result``."""
    def reply(nonce: str) -> bytes:
        body = {"v": 1, "nonce": nonce, "ok": ok, "result": result, **envelope}
        return agent.frame(body, nonce)
    return AgentClient(Replying(reply))


def begin(count: int | str, size: int | str, payload: bytes = b"{}", nonce: str = NONCE) -> bytes:
    digest = hashlib.sha256(payload).hexdigest().encode()
    return mark(nonce) + b" begin %s %s " % (str(count).encode(), str(size).encode()) + digest + b"\n"


def raw_frame(count: int | str, size: int | str, payload: bytes = b"{}", nonce: str = NONCE) -> bytes:
    chunk = mark(nonce) + b" 0 " + base64.b64encode(payload) + b"\n"
    return begin(count, size, payload, nonce) + chunk + mark(nonce) + b" end\n"


# --- the frame's numbers are the host's: checked before anything is allocated ---------------


@pytest.mark.parametrize(
    ("count", "size", "problem"),
    [
        (10**12, 2, "declares 1000000000000 chunks"),
        (0, 2, "declares 0 chunks"),
        (1, 10**15, "exceeds the cap"),
        (10**25, 2, "incomplete"),  # a number no reply needs is not a frame line at all
        ("9" * 5000, 2, "incomplete"),
    ],
)
def test_frame_numbers_are_bounded_before_use(count: int | str, size: int | str, problem: str) -> None:
    start = time.monotonic()
    with pytest.raises(AgentReplyError, match=problem):
        extract_reply(raw_frame(count, size), NONCE)
    assert time.monotonic() - start < 1


def test_huge_chunk_index_is_refused() -> None:
    output = begin(1, 2) + mark() + b" 99999999999999999999 e30=\n" + mark() + b" end\n"
    with pytest.raises(AgentReplyError, match="out of range"):
        extract_reply(output, NONCE)


def test_reply_error_names_host_and_operation() -> None:
    client = AgentClient(Replying(lambda nonce: raw_frame(10**12, 2, nonce=nonce)))
    with pytest.raises(AgentReplyError, match=r"^web1: ping: .*declares"):
        client.ping()


# --- well-framed replies of the wrong shape ---------------------------------------------------

ROW = {"name": "tank/www", "type": "filesystem", "guid": 1, "createtxg": 2, "creation": 3, "used": 4,
       "origin": None, "mountpoint": "/srv/www"}
SHA = "0" * 64

# (operation, how the client calls it, a result of the wrong shape, the field the error must name)
WRONG_SHAPES: list[tuple[str, Callable[[AgentClient], Any], Any, str]] = [
    ("ping", lambda c: c.ping(), {"agent": "1", "python": "3", "libzfs_core": True, "uid": 0}, "agent"),
    ("ping", lambda c: c.ping(), {"python": "3", "libzfs_core": True, "uid": 0}, "agent"),
    ("list", lambda c: c.list_datasets(), {"datasets": [{**ROW, "name": 42}]}, "datasets.0.name"),
    ("list", lambda c: c.list_datasets(), {"datasets": {"tank": ROW}}, "datasets"),
    ("list", lambda c: c.list_datasets(), {"datasets": [{**ROW, "guid": "1"}]}, "datasets.0.guid"),
    ("list", lambda c: c.list_datasets(), {"datasets": [{k: v for k, v in ROW.items() if k != "type"}]},
     "datasets.0.type"),
    ("list", lambda c: c.list_datasets(), {}, "datasets"),
    ("hold", lambda c: c.hold({"tank@s": "t"}), {"missing": "tank@s"}, "missing"),
    ("release", lambda c: c.release({"tank@s": ["t"]}), {"missing": [1]}, "missing.0"),
    ("holds", lambda c: c.holds("tank@s"), {"holds": [["t", 1]]}, "holds"),
    ("holds", lambda c: c.holds("tank@s"), {"holds": {"t": "soon"}}, "holds.t"),
    ("get", lambda c: c.get(["tank"], ["readonly"]), {"values": [{"name": "tank", "property": "readonly",
                                                                    "value": None, "source": "local"}]},
     "values.0.value"),
    ("get", lambda c: c.get(["tank"], ["readonly"]), {"values": ["tank readonly on"]}, "values.0"),
    ("pool_get", lambda c: c.pool("rpool"), {"values": {"bootfs": ["rpool/ROOT/x"]}}, "values.bootfs"),
    ("shipped", lambda c: c.shipped(b"/", [b"/usr/bin/x"]), {"shipped": ["yes"]}, "shipped.0"),
    ("diff", lambda c: c.diff("tank@a", "tank@b"), {"output_zlib": 5}, "output_zlib"),
    ("diff", lambda c: c.diff_changes("tank@a", "tank@b"), {}, "output_zlib"),
    ("lstat", lambda c: c.modes([b"/x"]), {"modes": ["0755"]}, "modes.0"),
    ("appended", lambda c: c.appended([(b"/a", b"/b")]), {"appended": ["yes"]}, "appended.0"),
    ("lstat", lambda c: c.modes([b"/x"]), {"modes": {"/x": 1}}, "modes"),
    ("hash", lambda c: c.hashes([b"/x"]), {"files": {"eA==": 1}, "complete": True}, "files.eA=="),
    ("hash", lambda c: c.hashes([b"/x"]), {"files": {}, "complete": "yes"}, "complete"),
]


@pytest.mark.parametrize(("op", "call", "result", "field"), WRONG_SHAPES,
                         ids=[f"{op}-{field}-{i}" for i, (op, _, _, field) in enumerate(WRONG_SHAPES)])
def test_wrong_shape_is_a_reply_error_naming_host_op_and_field(
    op: str, call: Callable[[AgentClient], Any], result: Any, field: str
) -> None:
    with pytest.raises(AgentReplyError) as caught:
        call(answering(result))
    assert str(caught.value).startswith(f"web1: {op}: reply field {field}:"), str(caught.value)


@pytest.mark.parametrize(
    "call",
    [lambda c: c.snapshot(["tank@s"]), lambda c: c.clone("tank/c", "tank@s"), lambda c: c.promote("tank/c"),
     lambda c: c.rename("tank/a", "tank/b"), lambda c: c.mount("tank/a"), lambda c: c.set("tank", {"a": "b"}),
     lambda c: c.ping()],
)
@pytest.mark.parametrize(
    ("envelope", "field"),
    [({"ok": "yes"}, "ok"), ({"ok": True, "result": ["a", "b"]}, "result"),
     ({"ok": False, "error": ["boom"]}, "error"), ({"ok": False, "error": {"message": 7}}, "error.message"),
     ({"ok": False, "error": {"message": "m", "errno": "EPERM"}}, "error.errno")],
)
def test_wrong_envelope_is_a_reply_error_for_every_operation(
    call: Callable[[AgentClient], Any], envelope: dict[str, Any], field: str
) -> None:
    client = AgentClient(Replying(lambda nonce: agent.frame({"v": 1, "nonce": nonce, **envelope}, nonce)))
    with pytest.raises(AgentReplyError, match=rf"^web1: \w+: reply field {field}:"):
        call(client)


def test_failure_without_an_error_body_is_still_an_agent_error() -> None:
    with pytest.raises(AgentError, match="without saying why"):
        answering({}, ok=False).rename("tank/a", "tank/b")


def test_base64_that_is_not_base64_is_a_reply_error() -> None:
    with pytest.raises(AgentReplyError, match="^web1: hash: "):
        answering({"files": {"not base64!": SHA}, "complete": True}).hashes([b"/x"])
    with pytest.raises(AgentReplyError, match="^web1: diff: "):
        answering({"output_zlib": "%%%"}).diff("tank@a", "tank@b")


@pytest.mark.parametrize("modes", [[], [0o100644, 0o100644]])
def test_lstat_reply_must_have_one_mode_per_path(modes: list[int]) -> None:
    """Pairing a short list up would leave a file without its (execute) mode, and so unflagged."""
    with pytest.raises(AgentReplyError, match="^web1: lstat: reply field modes has"):
        answering({"modes": modes}).modes([b"/srv/www/a"])


def test_valid_replies_still_come_through() -> None:
    assert answering({"datasets": [ROW]}).list_datasets()[0].mountpoint == "/srv/www"
    assert answering({"holds": {"t": 5}}).holds("tank@s") == {"t": 5}
    assert answering({"modes": [None, 0o100755]}).modes([b"/a", b"/b"]) == {b"/b": 0o100755}


# --- diffs: parsed as they inflate, within caps, malformed lines reported ---------------------


def diff_reply(output: bytes) -> dict[str, Any]:
    return {"output_zlib": base64.b64encode(zlib.compress(output)).decode(), "bytes": len(output)}


def test_diff_changes_reports_malformed_lines() -> None:
    output = diff_line("+", "F", b"/srv/www/a.php") + b"garbage\n" * 150 + diff_line("M", "F", b"/etc/passwd")
    result = answering(diff_reply(output)).diff_changes("tank@a", "tank@b")
    assert [c.path for c in result.changes] == [b"/srv/www/a.php", b"/etc/passwd"]
    assert result.malformed_count == 150 and len(result.malformed) == 100
    assert result.malformed[0].line_no == 2


@pytest.mark.parametrize(("max_diff", "max_lines", "problem"), [(10**6, 10, "more than 10 lines"),
                                                               (1000, 10**6, "beyond 1000 bytes")])
def test_diff_over_its_caps_is_refused_whole(max_diff: int, max_lines: int, problem: str) -> None:
    output = diff_line("+", "F", b"/srv/www/index.html") * 50
    client = answering(diff_reply(output))
    client.max_diff, client.max_diff_lines = max_diff, max_lines
    for call in (client.diff, client.diff_changes):
        with pytest.raises(AgentReplyError, match=f"^web1: diff: .*{problem}"):
            call("tank@a", "tank@b")


# --- peak memory under worst-case replies -------------------------------------------------------

#: Peak RSS growth allowed while all the worst-case replies below are refused (diff caps 8 MiB / 50k lines).
MEMORY_BOUND = 64 * 1024 * 1024

WORST_CASE = textwrap.dedent(
    """
    import base64, json, resource, sys, zlib
    from recovery.transport.result import Result
    from recovery.zfs import agent
    from recovery.zfs.client import AgentClient, AgentReplyError

    MARK = b"RECOVERY-AGENT-REPLY v1 "
    LINE = b"1700000000.000000000\\t+\\tF\\t/srv/www/index.html\\n"

    def bomb(size):
        # a diff that inflates to ``size`` bytes, compressed piece by piece so building it costs little
        packer, block, parts = zlib.compressobj(9), LINE * (1024 * 1024 // len(LINE)), []
        for _ in range(size // len(block)):
            parts.append(packer.compress(block))
        parts.append(packer.flush())
        return base64.b64encode(b"".join(parts)).decode()

    DIFF = bomb(int(sys.argv[1]))

    def reply(nonce, kind):
        head = MARK + nonce.encode()
        if kind == "count":
            return head + b" begin 1000000000000 2 " + b"0" * 64 + b"\\n" + head + b" 0 e30=\\n" + head + b" end\\n"
        if kind == "size":
            return head + b" begin 2 99999999999999999999 " + b"0" * 64 + b"\\n" + head + b" end\\n"
        return agent.frame({"v": 1, "nonce": nonce, "ok": True, "result": {"output_zlib": DIFF}}, nonce)

    class Host:
        name = "web1"
        def __init__(self, kind):
            self.kind = kind
        def run(self, command, timeout):
            nonce = json.loads(base64.b64decode(command.rsplit(" ", 1)[1]))["nonce"]
            return Result(reply(nonce, self.kind), b"", 0, 0.0)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = []
    for kind, call in [("count", "ping"), ("size", "ping"), ("diff", "diff_changes"), ("diff", "diff")]:
        client = AgentClient(Host(kind), max_diff=8 * 1024 * 1024, max_diff_lines=50_000)
        try:
            getattr(client, call)(*(["tank@a", "tank@b"] if call.startswith("diff") else []))
        except AgentReplyError as exc:
            refused.append(str(exc)[:80])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth": (after - before) * 1024, "refused": refused}))
    """
)


def test_worst_case_replies_stay_within_a_memory_bound() -> None:
    """A 10**12 chunk count, a 10**20 byte size and a diff inflating to 1 GiB cost < MEMORY_BOUND."""
    proc = subprocess.run([sys.executable, "-c", WORST_CASE, str(1024**3)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout)
    assert len(measured["refused"]) == 4, measured
    assert measured["growth"] < MEMORY_BOUND, measured


def test_appended_reply_must_have_one_entry_per_pair() -> None:
    """A short list paired up would leave a cut log unjudged."""
    with pytest.raises(AgentReplyError, match="^web1: appended: reply has 0 entries for 1 pairs"):
        answering({"appended": []}).appended([(b"/var/log/wtmp", b"/var/log/wtmp")])
