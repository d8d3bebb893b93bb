"""Orchestrator side of the host agent: ship it, call an operation, trust only its frame.

Any transport with ``run(command, timeout) -> Result`` serves (SSH now, the
serial console later). The host's interpreter is named by absolute path
(``/usr/bin/python3`` by default) and the agent names ``zfs`` the same way:
a compromised account's ``$PATH`` chooses nothing. Each call sends the whole agent (zlib + base64, about
8 KB) inside one ``python3 -I -c`` command, so nothing is installed on, or
read from the disk of, a host that may be compromised; the request rides in
argv as base64 of JSON. The wire format is described in ``agent.py``.

A client made with ``served=True`` starts the agent once per session instead,
on a channel of its own, and sends it each request as a line (see
:mod:`recovery.zfs.served`): a new python3 and its imports cost about a
second on a slow guest, a line on an open channel a few milliseconds. The
frame and its checks are the same.

The reply is searched for in whatever the host printed: only lines carrying
the marker and this call's nonce count, so shell banners, bracketed-paste
escapes and kernel messages around or between them are ignored. A frame that
is incomplete, too large, duplicated, or fails its sha256 is an error, never
a guess.

Every number and field in a reply is the intruder's choice on a compromised
host: the frame's declared size and chunk count are checked against each
other and the cap before anything is allocated for them, each operation's
result is validated against a model (a wrong shape is an
:class:`AgentReplyError` naming host, operation and field, never a
``KeyError``), and a diff is parsed as it inflates, within byte and line caps.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import secrets
import shlex
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recovery.errors import AdapterError
from recovery.hostile import for_terminal
from recovery.transport.channel import Channel
from recovery.transport.result import Result
from recovery.zfs.agent import CHUNK
from recovery.zfs.pipeline import Pipeline
from recovery.zfs.served import ServedReplyError, forget, served_agent
from recovery.zfs.diff import MAX_DIFF_BYTES, MAX_DIFF_LINES, DiffLimitExceeded, DiffResult, parse_diff_stream

MARK = b"RECOVERY-AGENT-REPLY"
VERSION = 1
#: Largest reply accepted (JSON bytes).
MAX_REPLY = 64 * 1024 * 1024
#: Largest request in argv: Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN).
MAX_REQUEST = 100_000
#: Base64 bytes of paths per ``lstat`` call, well under MAX_REQUEST.
LSTAT_BATCH = 64_000
#: Largest ``zfs diff`` output accepted once inflated (a diff of 100k changes is ~10 MB); see also MAX_DIFF_LINES.
MAX_DIFF = MAX_DIFF_BYTES
#: Inflated bytes handed to the diff parser at a time.
INFLATE_PIECE = 1024 * 1024

# One whole line of a frame (CRs before its newline allowed, as a console adds them). Numbers are at
# most 20 digits: no honest reply needs more, and int() of a long one is slow or refused.
_LINE = re.compile(
    rb"^" + re.escape(MARK)
    + rb" v1 ([0-9a-f]{16,64}) (begin [0-9]{1,20} [0-9]{1,20} [0-9a-f]{64}|[0-9]{1,20} [A-Za-z0-9+/=]*|end)\r*$",
    re.MULTILINE,
)


class Transport(Protocol):
    def run(self, command: str, timeout: float) -> Result: ...

    def open_channel(self, command: str, farewell: bytes) -> Channel: ...


class AgentReplyError(AdapterError):
    """No trustworthy reply could be found in what the host printed."""


class AgentError(AdapterError):
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
class PoolState:
    """Which boot environment a pool boots (``bootfs``) and where it is imported (``altroot``)."""

    name: str
    bootfs: str | None
    altroot: str | None


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
    return f"{shlex.quote(python)} -I -c {shlex.quote(_bootstrap())} {_encoded(request)}"


def _encoded(request: Mapping[str, Any]) -> str:
    encoded = base64.b64encode(json.dumps(request).encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_REQUEST:
        raise ValueError(f"request of {len(encoded)} bytes is too large for one command line")
    return encoded


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
    """(nonce, body) of every frame line; found in place, so the output is never copied line by line."""
    return [(match.group(1).decode("ascii"), match.group(2)) for match in _LINE.finditer(output)]


def expected_chunks(size: int) -> int:
    """How many chunk lines the agent writes for a payload of ``size`` bytes (at least one)."""
    encoded = 4 * ((size + 2) // 3)
    return max(1, -(-encoded // CHUNK))


def _assemble(bodies: list[bytes], max_reply: int) -> bytes:
    begins = [b for b in bodies if b.startswith(b"begin ")]
    if len(begins) != 1 or b"end" not in bodies:
        raise AgentReplyError(f"reply frame incomplete or repeated ({len(begins)} begin lines)")
    _, count_field, size_field, digest = begins[0].split(b" ")
    count, size = int(count_field), int(size_field)
    if size > max_reply:
        raise AgentReplyError(f"reply of {size} bytes exceeds the cap of {max_reply}")
    if count != expected_chunks(size):
        raise AgentReplyError(f"reply declares {count} chunks for {size} bytes (the agent writes {expected_chunks(size)})")
    chunks = _chunks(bodies, count)
    payload = base64.b64decode(b"".join(chunks[i] for i in range(count)), validate=True)
    if len(payload) != size or hashlib.sha256(payload).hexdigest().encode() != digest:
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


class _Model(BaseModel):
    """A reply part as the agent writes it: exact JSON types (no "42" for 42), extra keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _ErrorBody(_Model):
    message: str
    dataset: str | None = None
    errno: int | None = None
    errname: str | None = None


class _Envelope(_Model):
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: _ErrorBody | None = None


class _Batched(_Model):
    replies: list[dict[str, Any]]


class _Ping(_Model):
    agent: int
    python: str
    libzfs_core: bool
    uid: int


class _DatasetRow(_Model):
    name: str
    type: str
    guid: int
    createtxg: int
    creation: int
    used: int | None
    origin: str | None
    mountpoint: str | None


class _Listed(_Model):
    datasets: list[_DatasetRow]


class _Missing(_Model):
    missing: list[str]


class _Holds(_Model):
    holds: dict[str, int]


class _PropertyRow(_Model):
    name: str
    property: str
    value: str
    source: str


class _Got(_Model):
    values: list[_PropertyRow]


class _PoolGot(_Model):
    values: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]]


class _Diffed(_Model):
    output_zlib: str


class _Modes(_Model):
    modes: list[int | None]


class _Appended(_Model):
    appended: list[bool | None]


class _Shipped(_Model):
    shipped: list[bool | None]


class _Hashed(_Model):
    files: dict[str, str]
    complete: bool


_M = TypeVar("_M", bound=_Model)

#: Each pool's altroot as a session found it, kept as long as the session: an import's altroot does
#: not change while it lasts (a boot ends the session), so the steps of a host ask the host once.
#: With each session's altroots, the lock its clients share: threads diffing side by side, whatever
#: client they hold, ask at once, and one asks the host.
_ALTROOTS: weakref.WeakKeyDictionary[object, tuple[dict[str, str | None], threading.Lock]] = (
    weakref.WeakKeyDictionary())
_ALTROOTS_LOCK = threading.Lock()


class AgentClient:
    """ZFS operations on one host through the shipped agent.

    Every reply is checked against a model of its operation: a compromised
    host can make a call fail, never make it crash or return a wrong type.
    """

    def __init__(
        self,
        transport: Transport,
        python: str = "/usr/bin/python3",
        zfs: str | None = None,
        timeout: float = 600.0,
        max_reply: int = MAX_REPLY,
        max_diff: int = MAX_DIFF,
        max_diff_lines: int = MAX_DIFF_LINES,
        host: str | None = None,
        served: bool = False,
    ) -> None:
        self.transport = transport
        self.served = served
        self.python = python
        self.zfs = zfs
        self.timeout = timeout
        self.max_reply = max_reply
        self.max_diff = max_diff
        self.max_diff_lines = max_diff_lines
        self.host = host or _host_name(transport)
        with _ALTROOTS_LOCK:
            self._altroots, self._altroots_lock = _ALTROOTS.setdefault(transport, ({}, threading.Lock()))
        self._pipeline = Pipeline(self._exchange, budget=MAX_REQUEST * 3 // 4 - 4096)  # JSON, before base64

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one operation; its result, or :class:`AgentError` / :class:`AgentReplyError`.

        Threads may call at once: a served agent works on their requests side by
        side (see :mod:`recovery.zfs.served`); otherwise what they ask together
        shares a round trip (see :mod:`recovery.zfs.pipeline`). Each gets its own
        reply, checked alone.
        """
        request = build_request(op, args, secrets.token_hex(16), self.zfs)
        try:  # a served agent answers each call side by side; one process per call, a batch per trip
            reply = self._round_trip(request) if self.served else self._pipeline.submit(request)
        except AgentReplyError as exc:
            raise AgentReplyError(f"{self.host}: {op}: {exc}") from None
        envelope = self._checked(op, _Envelope, reply)
        if not envelope.ok:
            error = envelope.error or _ErrorBody(message="the agent reported a failure without saying why")
            raise AgentError(op, error.message, error.dataset, error.errno, error.errname)
        return envelope.result

    def _exchange(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One round trip: a request alone, or several as one ``batch``; a reply each, in order."""
        if len(requests) == 1:
            return [self._round_trip(requests[0])]
        members = [{key: r[key] for key in ("nonce", "op", "args")} for r in requests]
        reply = self._round_trip(build_request("batch", {"requests": members}, secrets.token_hex(16), self.zfs))
        try:
            envelope = _Envelope.model_validate(reply)
            if not envelope.ok:
                why = envelope.error.message if envelope.error else "without saying why"
                raise AgentReplyError(f"a batch of {len(requests)} requests was refused: {for_terminal(why, 300)}")
            replies = _Batched.model_validate(envelope.result).replies
        except ValidationError as exc:
            raise AgentReplyError(f"batch reply {_first_problem(exc)}") from None
        if len(replies) != len(requests):
            raise AgentReplyError(f"a batch of {len(requests)} requests has {len(replies)} replies")
        if any(reply.get("nonce") != r["nonce"] or reply.get("v") != VERSION for reply, r in zip(replies, requests)):
            raise AgentReplyError("a reply of the batch does not match its request")
        return replies

    def _round_trip(self, request: Mapping[str, Any]) -> dict[str, Any]:
        if self.served:
            output, context = self._served(request), ""
        else:
            result = self.transport.run(command_for(request, self.python), timeout=self.timeout)
            output, context = result.stdout, _context(result)
        try:
            return extract_reply(output, request["nonce"], self.max_reply)
        except AgentReplyError as exc:
            forget(self.transport)  # an agent that lost a reply is not trusted with the next
            raise AgentReplyError(f"{exc}{context}") from None

    def stop(self) -> None:
        """Ask this session's served agent to leave now (it would after a while without requests)."""
        forget(self.transport)

    def _served(self, request: Mapping[str, Any]) -> bytes:
        """What this session's served agent wrote in answer to ``request`` (started first if need be)."""
        try:
            agent = served_agent(self.transport, self.python, _bootstrap(), self.host)
            return agent.exchange(_encoded(request).encode("ascii"), request["nonce"], self.timeout,
                                  2 * self.max_reply + (1 << 20))
        except ServedReplyError as exc:
            forget(self.transport)
            raise AgentReplyError(str(exc)) from None

    def _one_each(self, op: str, what: str, values: Sequence[Any], batch: Sequence[Any], unit: str = "paths") -> None:
        """A reply with fewer or more entries than the batch asked about is refused: pairing them up
        anyway would give a path another path's answer, or none."""
        if len(values) != len(batch):
            raise AgentReplyError(f"{self.host}: {op}: {what} has {len(values)} entries for {len(batch)} {unit}")

    def _checked(self, op: str, model: type[_M], data: Any) -> _M:
        """``data`` as ``model``; a wrong shape names host, operation and the first bad field."""
        with self._reply_errors(op):
            return model.model_validate(data)

    @contextmanager
    def _reply_errors(self, op: str) -> Iterator[None]:
        """Anything wrong with what the host sent becomes one AgentReplyError naming host and operation."""
        try:
            yield
        except ValidationError as exc:
            raise AgentReplyError(f"{self.host}: {op}: reply {_first_problem(exc)}") from None
        except (AgentReplyError, DiffLimitExceeded, binascii.Error) as exc:
            raise AgentReplyError(f"{self.host}: {op}: {for_terminal(str(exc), 300)}") from None

    def ping(self) -> dict[str, Any]:
        return self._checked("ping", _Ping, self.call("ping")).model_dump()

    def list_datasets(
        self, root: str | None = None, types: Sequence[str] = ("filesystem", "volume", "snapshot")
    ) -> list[Dataset]:
        rows = self._checked("list", _Listed, self.call("list", root=root, types=list(types))).datasets
        return [Dataset(**row.model_dump()) for row in rows]

    def snapshot(self, names: Sequence[str]) -> None:
        """Atomic: all snapshots in one transaction group, or none."""
        self.call("snapshot", snapshots=list(names))

    def hold(self, holds: Mapping[str, str]) -> list[str]:
        """Place ``{snapshot: tag}`` holds; returns snapshots that do not exist."""
        return self._checked("hold", _Missing, self.call("hold", holds=dict(holds))).missing

    def release(self, holds: Mapping[str, Sequence[str]]) -> list[str]:
        result = self.call("release", holds={s: list(t) for s, t in holds.items()})
        return self._checked("release", _Missing, result).missing

    def holds(self, snapshot: str) -> dict[str, int]:
        return self._checked("holds", _Holds, self.call("holds", snapshot=snapshot)).holds

    def clone(self, name: str, origin: str, props: Mapping[str, str] | None = None) -> None:
        """Created unmounted, with ``props`` set in the same transaction."""
        self.call("clone", name=name, origin=origin, props=dict(props or {}))

    def promote(self, name: str) -> None:
        self.call("promote", name=name)

    def rename(self, source: str, target: str) -> None:
        self.call("rename", source=source, target=target)

    def mount(self, name: str, inspect: bool = False) -> None:
        """Mount at the mountpoint; ``inspect``: read-only, nosuid, nodev, noexec."""
        self.call("mount", name=name, inspect=inspect)

    def unmount(self, name: str) -> None:
        self.call("unmount", name=name)

    def get(self, datasets: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
        result = self.call("get", datasets=list(datasets), properties=list(properties))
        return [row.model_dump() for row in self._checked("get", _Got, result).values]

    def set(self, dataset: str, properties: Mapping[str, str]) -> None:
        self.call("set", dataset=dataset, properties=dict(properties))

    def pool(self, pool: str) -> PoolState:
        """The pool's boot environment and altroot (None when unset)."""
        got = self._checked("pool_get", _PoolGot, self.call("pool_get", pool=pool)).values
        unset = ("", "-")
        return PoolState(pool, None if got.get("bootfs", "-") in unset else got["bootfs"],
                         None if got.get("altroot", "-") in unset else got["altroot"])

    def altroot(self, pool: str) -> str | None:
        """Where the pool is imported (asked once per session, see :data:`_ALTROOTS`)."""
        with self._altroots_lock:
            if pool not in self._altroots:
                self._altroots[pool] = self.pool(pool).altroot
            return self._altroots[pool]

    def set_bootfs(self, pool: str, dataset: str) -> None:
        self.call("pool_set", pool=pool, property="bootfs", value=dataset)

    def diff(self, origin: str, target: str) -> bytes:
        """Raw ``zfs diff -FHt`` output, within :attr:`max_diff` bytes and :attr:`max_diff_lines` lines."""
        compressed = self._diff_zlib(origin, target)
        with self._reply_errors("diff"):
            output = inflate(compressed, self.max_diff)
            if output.count(b"\n") + (output[-1:] not in (b"", b"\n")) > self.max_diff_lines:
                raise DiffLimitExceeded(f"diff output has more than {self.max_diff_lines} lines")
        return output

    def diff_changes(self, origin: str, target: str) -> DiffResult:
        """``zfs diff`` parsed as it inflates: the inflated output is never held whole.

        Over :attr:`max_diff` bytes or :attr:`max_diff_lines` lines is an
        :class:`AgentReplyError` (a diff judged in part could hide an indicator).
        Malformed lines are in the result's ``malformed`` / ``malformed_count``.
        """
        compressed = self._diff_zlib(origin, target)
        with self._reply_errors("diff"):
            return parse_diff_stream(inflate_pieces(compressed, self.max_diff), self.max_diff, self.max_diff_lines)

    def _diff_zlib(self, origin: str, target: str) -> bytes:
        encoded = self._checked("diff", _Diffed, self.call("diff", **{"from": origin, "to": target})).output_zlib
        with self._reply_errors("diff"):
            return base64.b64decode(encoded, validate=True)

    def modes(self, paths: Sequence[bytes]) -> dict[bytes, int]:
        """st_mode of existing paths on the host (absent paths are left out), in batches.

        A reply with fewer or more modes than paths is refused: pairing them up
        anyway would give a file another file's mode, or none (and so hide it).
        """
        found: dict[bytes, int] = {}
        for batch in _batches(paths, LSTAT_BATCH):
            encoded = [base64.b64encode(p).decode("ascii") for p in batch]
            modes = self._checked("lstat", _Modes, self.call("lstat", paths=encoded)).modes
            self._one_each("lstat", "reply field modes", modes, batch)
            found.update((path, mode) for path, mode in zip(batch, modes) if mode is not None)
        return found

    def hashes(self, paths: Sequence[bytes], limit: int = 100000) -> tuple[dict[bytes, str], bool]:
        """sha256 of regular files under ``paths`` on the host, and whether the walk was complete."""
        encoded = [base64.b64encode(p).decode("ascii") for p in paths]
        hashed = self._checked("hash", _Hashed, self.call("hash", paths=encoded, limit=limit))
        with self._reply_errors("hash"):
            files = {base64.b64decode(k, validate=True): v for k, v in hashed.files.items()}
        return files, hashed.complete

    def shipped(self, root: bytes, paths: Sequence[bytes]) -> dict[bytes, bool]:
        """For files below ``root`` (a system's root, or its view in a snapshot), whether each is exactly
        as its Debian package ships it in that state (paths no package ships are left out)."""
        found: dict[bytes, bool] = {}
        for batch in _batches(paths, LSTAT_BATCH):
            encoded = [base64.b64encode(p).decode("ascii") for p in batch]
            reply = self.call("shipped", root=base64.b64encode(root).decode("ascii"), files=encoded)
            shipped = self._checked("shipped", _Shipped, reply).shipped
            self._one_each("shipped", "reply", shipped, batch)
            found.update((path, ok) for path, ok in zip(batch, shipped) if ok is not None)
        return found

    def appended(self, pairs: Sequence[tuple[bytes, bytes]]) -> list[bool | None]:
        """For each (older, newer) file, whether the newer only grew at its end (None: not two files)."""
        found: list[bool | None] = []
        for batch in _batches(pairs, LSTAT_BATCH, length=lambda pair: len(pair[0]) + len(pair[1])):
            encoded = [[base64.b64encode(p).decode("ascii") for p in pair] for pair in batch]
            appended = self._checked("appended", _Appended, self.call("appended", pairs=encoded)).appended
            self._one_each("appended", "reply", appended, batch, "pairs")
            found += appended
        return found

    def modes_in_snapshot(self, mountpoint: bytes, snapshot: str, paths: Sequence[bytes]) -> dict[bytes, int]:
        """Modes of mountpoint-absolute ``paths`` as they are in ``snapshot``, keyed by those paths.

        This is the ``modes`` mapping :func:`recovery.zfs.triage.triage` takes for
        a diff whose newer side is ``snapshot``.
        """
        views = {snapshot_view(mountpoint, snapshot, path): path for path in paths}
        return {views[view]: mode for view, mode in self.modes(list(views)).items()}


def _host_name(transport: Transport) -> str:
    """The name a transport goes by (an SSH session's target, a console's name), for error messages."""
    name = getattr(transport, "name", None) or getattr(getattr(transport, "target", None), "name", None)
    return name if isinstance(name, str) else "host"


def _first_problem(exc: ValidationError) -> str:
    """``field a.0.b: what is wrong`` for the first error; field names may be the host's, so made inert."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "(whole result)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {for_terminal(where, 120)}: {first['msg']}{more}"


_T = TypeVar("_T")


def _batches(items: Sequence[_T], budget: int, length: Callable[[_T], int] = len) -> list[list[_T]]:
    """Split paths (or pairs of them: ``length`` gives their bytes) so each batch's base64 stays
    within ``budget`` bytes."""
    batches: list[list[_T]] = [[]]
    used = 0
    for item in items:
        size = 4 * (length(item) + 2) // 3 + 8
        if batches[-1] and used + size > budget:
            batches.append([])
            used = 0
        batches[-1].append(item)
        used += size
    return [batch for batch in batches if batch]


def inflate(data: bytes, limit: int) -> bytes:
    """zlib-decompress at most ``limit`` bytes: a hostile host may send a decompression bomb."""
    return b"".join(inflate_pieces(data, limit))


def inflate_pieces(data: bytes, limit: int, piece: int = INFLATE_PIECE) -> Iterator[bytes]:
    """zlib-decompress ``piece`` bytes at a time, refusing to go past ``limit`` in all.

    A bomb costs one piece of memory before it is refused, whatever it would inflate to.
    """
    inflater = zlib.decompressobj()
    produced = 0
    pending = data
    try:
        while chunk := inflater.decompress(pending, min(piece, limit - produced + 1)):
            produced += len(chunk)
            if produced > limit:
                raise AgentReplyError(f"compressed output inflates beyond {limit} bytes")
            yield chunk
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise AgentReplyError(f"compressed output is corrupt: {exc}") from None
    if not inflater.eof:
        raise AgentReplyError("compressed output is truncated")


def snapshot_view(mountpoint: bytes, snapshot: str, path: bytes) -> bytes:
    """Where a mountpoint-absolute path of a dataset is readable inside one of its snapshots.

    ``/srv/www/cgi-bin/x`` in ``tank/www@s1`` mounted at ``/srv/www`` is
    ``/srv/www/.zfs/snapshot/s1/cgi-bin/x`` (the snapshot mounts on access).
    """
    root = mountpoint.rstrip(b"/")
    if "@" not in snapshot:
        raise ValueError(f"{snapshot!r} is not a snapshot name (dataset@snapshot)")
    if path != root and not path.startswith(root + b"/"):
        raise ValueError(f"{path!r} is not under the mountpoint {mountpoint!r}")
    return root + b"/.zfs/snapshot/" + snapshot.partition("@")[2].encode() + path[len(root) :]


def _context(result: Result) -> str:
    truncated = " (output was truncated by the transport cap)" if result.truncated else ""
    stderr = for_terminal(result.stderr[-500:], limit=500)
    return f"; exit {result.exit_code}{truncated}; stderr: {stderr or '(empty)'}"
