"""Orchestrator side of the host agent: ship it, call an operation, trust only its frame.

Any transport with ``run(command, timeout) -> Result`` serves (SSH now, the
serial console later). The host's interpreter is named by absolute path
(``/usr/bin/python3`` by default) and the agent names ``zfs`` the same way:
a compromised account's ``$PATH`` chooses nothing. Each call sends the whole agent (zlib + base64, about
8 KB) inside one ``python3 -I -c`` command, so nothing is installed on, or
read from the disk of, a host that may be compromised; the request rides in
argv as base64 of JSON. The wire format is described in ``agent.py``.

The reply is searched for in whatever the host printed: only lines carrying
the marker and this call's nonce count, so shell banners, bracketed-paste
escapes and kernel messages around or between them are ignored. A frame that
is incomplete, too large, duplicated, or fails its sha256 is an error, never
a guess.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import secrets
import shlex
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from recovery.hostile import for_terminal
from recovery.transport.result import Result

MARK = b"RECOVERY-AGENT-REPLY"
VERSION = 1
#: Largest reply accepted (JSON bytes).
MAX_REPLY = 64 * 1024 * 1024
#: Largest request in argv: Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN).
MAX_REQUEST = 100_000
#: Base64 bytes of paths per ``lstat`` call, well under MAX_REQUEST.
LSTAT_BATCH = 64_000
#: Largest ``zfs diff`` output accepted once inflated (a diff of 100k changes is ~10 MB).
MAX_DIFF = 512 * 1024 * 1024

_LINE = re.compile(
    re.escape(MARK) + rb" v1 ([0-9a-f]{16,64}) (begin [0-9]+ [0-9]+ [0-9a-f]{64}|[0-9]+ [A-Za-z0-9+/=]*|end)"
)


class Transport(Protocol):
    def run(self, command: str, timeout: float) -> Result: ...


class AgentReplyError(Exception):
    """No trustworthy reply could be found in what the host printed."""


class AgentError(Exception):
    """The agent ran and reports that the operation failed."""

    def __init__(self, op: str, message: str, dataset: str | None, errno: int | None, errname: str | None) -> None:
        super().__init__(for_terminal(message))
        self.op = op
        self.dataset = dataset
        self.errno = errno
        self.errname = errname


@dataclass(frozen=True)
class Dataset:
    """One row of ``zfs list -Hp``: a filesystem, volume or snapshot."""

    name: str
    type: str
    guid: int
    createtxg: int
    creation: int
    used: int | None
    origin: str | None
    mountpoint: str | None


@dataclass(frozen=True)
class SentStream:
    path: str
    bytes: int
    sha256: str


@functools.cache
def agent_source() -> bytes:
    return resources.files("recovery.zfs").joinpath("agent.py").read_bytes()


@functools.cache
def _bootstrap() -> str:
    packed = base64.b64encode(zlib.compress(agent_source(), 9)).decode("ascii")
    return f'import base64,zlib;exec(compile(zlib.decompress(base64.b64decode("{packed}")),"recovery-agent","exec"))'


def build_request(op: str, args: Mapping[str, Any], nonce: str, zfs: str | None = None) -> dict[str, Any]:
    return {"v": VERSION, "nonce": nonce, "op": op, "args": dict(args), "zfs": zfs}


def command_for(request: Mapping[str, Any], python: str = "/usr/bin/python3") -> str:
    """The shell command that runs the agent on the host for this request."""
    encoded = base64.b64encode(json.dumps(request).encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_REQUEST:
        raise ValueError(f"request of {len(encoded)} bytes is too large for one command line")
    return f"{shlex.quote(python)} -I -c {shlex.quote(_bootstrap())} {encoded}"


def extract_reply(output: bytes, nonce: str, max_reply: int = MAX_REPLY) -> dict[str, Any]:
    """The reply JSON framed with ``nonce`` in ``output``; anything outside the frame is ignored."""
    lines = _frame_lines(output)
    ours = [body for line_nonce, body in lines if line_nonce == nonce]
    if not ours:
        others = sorted({line_nonce for line_nonce, _ in lines})
        if others:
            raise AgentReplyError(f"reply carries another nonce ({', '.join(others)[:80]}): stale or forged output")
        raise AgentReplyError("no agent reply found in the output")
    try:
        reply = json.loads(_assemble(ours, max_reply))
    except ValueError as exc:
        raise AgentReplyError(f"reply frame is not valid: {exc}") from None
    if not isinstance(reply, dict) or reply.get("nonce") != nonce or reply.get("v") != VERSION:
        raise AgentReplyError("reply body does not match this request")
    return reply


def _frame_lines(output: bytes) -> list[tuple[str, bytes]]:
    found = []
    for line in output.split(b"\n"):
        match = _LINE.fullmatch(line.rstrip(b"\r"))
        if match:
            found.append((match.group(1).decode("ascii"), match.group(2)))
    return found


def _assemble(bodies: list[bytes], max_reply: int) -> bytes:
    begins = [b for b in bodies if b.startswith(b"begin ")]
    if len(begins) != 1 or b"end" not in bodies:
        raise AgentReplyError(f"reply frame incomplete or repeated ({len(begins)} begin lines)")
    _, count, size, digest = begins[0].split(b" ")
    if int(size) > max_reply:
        raise AgentReplyError(f"reply of {int(size)} bytes exceeds the cap of {max_reply}")
    chunks = _chunks(bodies, int(count))
    payload = base64.b64decode(b"".join(chunks[i] for i in range(int(count))), validate=True)
    if len(payload) != int(size) or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise AgentReplyError("reply failed its length or sha256 check (output corrupted in transit)")
    return payload


def _chunks(bodies: list[bytes], count: int) -> dict[int, bytes]:
    chunks: dict[int, bytes] = {}
    for body in bodies:
        if body == b"end" or body.startswith(b"begin "):
            continue
        index, _, chunk = body.partition(b" ")
        if int(index) >= count or chunks.setdefault(int(index), chunk) != chunk:
            raise AgentReplyError(f"reply chunk {int(index)} is out of range or contradicts itself")
    missing = [i for i in range(count) if i not in chunks]
    if missing:
        raise AgentReplyError(f"reply chunks missing: {missing[:10]} (lines lost or garbled in transit)")
    return chunks


class AgentClient:
    """ZFS operations on one host through the shipped agent."""

    def __init__(
        self,
        transport: Transport,
        python: str = "/usr/bin/python3",
        zfs: str | None = None,
        timeout: float = 600.0,
        max_reply: int = MAX_REPLY,
        max_diff: int = MAX_DIFF,
    ) -> None:
        self.transport = transport
        self.python = python
        self.zfs = zfs
        self.timeout = timeout
        self.max_reply = max_reply
        self.max_diff = max_diff

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one operation; its result, or :class:`AgentError` / :class:`AgentReplyError`."""
        nonce = secrets.token_hex(16)
        command = command_for(build_request(op, args, nonce, self.zfs), self.python)
        result = self.transport.run(command, timeout=self.timeout)
        try:
            reply = extract_reply(result.stdout, nonce, self.max_reply)
        except AgentReplyError as exc:
            raise AgentReplyError(f"{op}: {exc}{_context(result)}") from None
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise AgentError(op, str(error.get("message")), error.get("dataset"), error.get("errno"), error.get("errname"))
        return dict(reply.get("result") or {})

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def list_datasets(
        self, root: str | None = None, types: Sequence[str] = ("filesystem", "volume", "snapshot")
    ) -> list[Dataset]:
        rows = self.call("list", root=root, types=list(types))["datasets"]
        try:
            return [Dataset(**row) for row in rows]
        except TypeError as exc:
            raise AgentReplyError(f"list: unexpected row shape: {exc}") from None

    def snapshot(self, names: Sequence[str]) -> None:
        """Atomic: all snapshots in one transaction group, or none."""
        self.call("snapshot", snapshots=list(names))

    def hold(self, holds: Mapping[str, str]) -> list[str]:
        """Place ``{snapshot: tag}`` holds; returns snapshots that do not exist."""
        return list(self.call("hold", holds=dict(holds))["missing"])

    def release(self, holds: Mapping[str, Sequence[str]]) -> list[str]:
        return list(self.call("release", holds={s: list(t) for s, t in holds.items()})["missing"])

    def holds(self, snapshot: str) -> dict[str, int]:
        return dict(self.call("holds", snapshot=snapshot)["holds"])

    def clone(self, name: str, origin: str) -> None:
        self.call("clone", name=name, origin=origin)

    def promote(self, name: str) -> None:
        self.call("promote", name=name)

    def rename(self, source: str, target: str) -> None:
        self.call("rename", source=source, target=target)

    def mount(self, name: str) -> None:
        self.call("mount", name=name)

    def get(self, datasets: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
        return list(self.call("get", datasets=list(datasets), properties=list(properties))["values"])

    def set(self, dataset: str, properties: Mapping[str, str]) -> None:
        self.call("set", dataset=dataset, properties=dict(properties))

    def send(self, snapshot: str, path: str, incremental_from: str | None = None, raw: bool = False) -> SentStream:
        result = self.call("send", snapshot=snapshot, path=path, raw=raw, **{"from": incremental_from})
        return SentStream(result["path"], result["bytes"], result["sha256"])

    def diff(self, origin: str, target: str) -> bytes:
        """Raw ``zfs diff -FHt`` output, for :func:`recovery.zfs.diff.parse_diff`."""
        result = self.call("diff", **{"from": origin, "to": target})
        return inflate(base64.b64decode(result["output_zlib"]), self.max_diff)

    def modes(self, paths: Sequence[bytes]) -> dict[bytes, int]:
        """st_mode of existing paths on the host (absent paths are left out), in batches."""
        found: dict[bytes, int] = {}
        for batch in _batches(paths, LSTAT_BATCH):
            encoded = [base64.b64encode(p).decode("ascii") for p in batch]
            modes = self.call("lstat", paths=encoded)["modes"]
            found.update((path, mode) for path, mode in zip(batch, modes) if mode is not None)
        return found

    def hashes(self, paths: Sequence[bytes], limit: int = 100000) -> tuple[dict[bytes, str], bool]:
        """sha256 of regular files under ``paths`` on the host, and whether the walk was complete."""
        encoded = [base64.b64encode(p).decode("ascii") for p in paths]
        result = self.call("hash", paths=encoded, limit=limit)
        files = {base64.b64decode(k): v for k, v in result["files"].items()}
        return files, bool(result["complete"])

    def modes_in_snapshot(self, mountpoint: bytes, snapshot: str, paths: Sequence[bytes]) -> dict[bytes, int]:
        """Modes of mountpoint-absolute ``paths`` as they are in ``snapshot``, keyed by those paths.

        This is the ``modes`` mapping :func:`recovery.zfs.triage.triage` takes for
        a diff whose newer side is ``snapshot``.
        """
        views = {snapshot_view(mountpoint, snapshot, path): path for path in paths}
        return {views[view]: mode for view, mode in self.modes(list(views)).items()}


def _batches(paths: Sequence[bytes], budget: int) -> list[list[bytes]]:
    """Split paths so each batch's base64 stays within ``budget`` bytes."""
    batches: list[list[bytes]] = [[]]
    used = 0
    for path in paths:
        size = 4 * (len(path) + 2) // 3 + 4
        if batches[-1] and used + size > budget:
            batches.append([])
            used = 0
        batches[-1].append(path)
        used += size
    return [batch for batch in batches if batch]


def inflate(data: bytes, limit: int) -> bytes:
    """zlib-decompress at most ``limit`` bytes: a hostile host may send a decompression bomb."""
    inflater = zlib.decompressobj()
    try:
        output = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise AgentReplyError(f"compressed output is corrupt: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise AgentReplyError(f"compressed output is truncated or inflates beyond {limit} bytes")
    return output


def snapshot_view(mountpoint: bytes, snapshot: str, path: bytes) -> bytes:
    """Where a mountpoint-absolute path of a dataset is readable inside one of its snapshots.

    ``/srv/www/cgi-bin/x`` in ``tank/www@s1`` mounted at ``/srv/www`` is
    ``/srv/www/.zfs/snapshot/s1/cgi-bin/x`` (the snapshot mounts on access).
    """
    root = mountpoint.rstrip(b"/")
    if path != root and not path.startswith(root + b"/"):
        raise ValueError(f"{path!r} is not under the mountpoint {mountpoint!r}")
    return root + b"/.zfs/snapshot/" + snapshot.partition("@")[2].encode() + path[len(root) :]


def _context(result: Result) -> str:
    truncated = " (output was truncated by the transport cap)" if result.truncated else ""
    stderr = for_terminal(result.stderr[-500:], limit=500)
    return f"; exit {result.exit_code}{truncated}; stderr: {stderr or '(empty)'}"
