"""HAProxy traffic driver: the runtime API on the stats socket, verified with ``show servers state``.

HAProxy has no compare-and-swap, so the driver checks that the servers are
still in the states the plan saw right before it sends ``set server``; the
window is one local socket round trip. The mirror's servers are made ready
before the service's servers are drained, so there is never a moment with no
server taking traffic.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from recovery.hostile import CappedBuffer, for_terminal
from recovery.traffic.base import (
    TrafficConflict,
    TrafficError,
    TrafficRefused,
    TrafficState,
    TrafficUnreachable,
    TrafficUnverified,
)

ADMIN_STATES = ("ready", "drain", "maint")
POLL_INTERVAL = 0.01
ANSWER_CAP = 1024 * 1024

# srv_admin_state bits (HAProxy management guide, "show servers state").
_MAINT_BITS = 0x01 | 0x02 | 0x20  # forced, inherited, address resolution failure
_DRAIN_BITS = 0x08 | 0x10  # forced, inherited
_FORMAT_VERSION = "1"
_REQUIRED_COLUMNS = ("be_name", "srv_name", "srv_op_state", "srv_admin_state")
# HAProxy object names; anything else (spaces, ';') could smuggle a second runtime command.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+\Z")
# Plain ASCII digits only: int() would also take "1_0", "٣" or " 7".
_DECIMAL = re.compile(r"[0-9]{1,10}\Z")


@dataclass(frozen=True)
class HaproxySocket:
    """The stats socket of one HAProxy; it must be declared with ``level admin``."""

    path: str
    timeout: float = 2.0


@dataclass(frozen=True)
class HaproxyBackend:
    """The service's backend: its own ``servers`` and the ``mirror`` servers that take over.

    On divert the mirror servers go ``ready`` and the service's servers go to
    ``divert_state`` (``drain`` lets open keep-alive sessions finish, ``maint``
    cuts them).
    """

    backend: str
    servers: tuple[str, ...]
    mirror: tuple[str, ...] = ()
    divert_state: str = "drain"
    verify_timeout: float = 2.0


@dataclass(frozen=True)
class ServerRow:
    """One server line of ``show servers state``."""

    backend: str
    server: str
    op_state: int
    admin_bits: int

    @property
    def admin_state(self) -> str:
        if self.admin_bits & _MAINT_BITS:
            return "maint"
        if self.admin_bits & _DRAIN_BITS:
            return "drain"
        return "ready"


class ServersStateError(TrafficError):
    """``show servers state`` answered something that is not the documented format."""


def parse_servers_state(text: str) -> list[ServerRow]:
    """Parse format version 1, taking columns by their header names, rejecting anything odd.

    A row that cannot be read is an error rather than skipped: a silently
    missing server would look like a server that does not exist.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != _FORMAT_VERSION:
        first = for_terminal(lines[0] if lines else "", 80)
        raise ServersStateError(f"unsupported format: first line {first!r}")
    columns = _header(lines[1:2])
    numbered = enumerate(lines[2:], start=3)
    rows = [_row(columns, line, number) for number, line in numbered if not line.startswith("#")]
    _reject_duplicates(rows)
    return rows


def _header(lines: list[str]) -> dict[str, int]:
    if not lines or not lines[0].startswith("#"):
        raise ServersStateError("missing column header line")
    names = lines[0][1:].split()
    missing = [name for name in _REQUIRED_COLUMNS if name not in names]
    if missing:
        raise ServersStateError(f"column header lacks {', '.join(missing)}")
    return {name: index for index, name in reversed(list(enumerate(names)))}


def _row(columns: dict[str, int], line: str, number: int) -> ServerRow:
    fields = line.split()
    if len(fields) <= max(columns[name] for name in _REQUIRED_COLUMNS):
        raise ServersStateError(f"line {number} has too few fields: {for_terminal(line, 200)!r}")
    op_text, admin_text = fields[columns["srv_op_state"]], fields[columns["srv_admin_state"]]
    if not (_DECIMAL.match(op_text) and _DECIMAL.match(admin_text)):
        raise ServersStateError(f"line {number} has a non-numeric state: {for_terminal(line, 200)!r}")
    op_state, admin_bits = int(op_text), int(admin_text)
    if not 0 <= op_state <= 3 or not 0 <= admin_bits <= 0xFF:
        raise ServersStateError(f"line {number} has a state out of range: {for_terminal(line, 200)!r}")
    return ServerRow(fields[columns["be_name"]], fields[columns["srv_name"]], op_state, admin_bits)


def _reject_duplicates(rows: list[ServerRow]) -> None:
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.backend, row.server)
        if key in seen:
            name = for_terminal(f"{row.backend}/{row.server}", 160)
            raise ServersStateError(f"server {name} listed twice")
        seen.add(key)


def runtime_command(sock: HaproxySocket, command: str) -> str:
    """Send one command to the runtime API and return its whole answer (capped)."""
    answer = CappedBuffer(ANSWER_CAP)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(sock.timeout)
            conn.connect(sock.path)
            conn.sendall(command.encode() + b"\n")
            while chunk := conn.recv(65536):
                answer.write(chunk)
    except TimeoutError:
        raise TrafficUnreachable(
            f"HAProxy socket {sock.path}: no answer to {command!r} within {sock.timeout:.1f} s"
        ) from None
    except OSError as exc:
        raise TrafficUnreachable(f"HAProxy socket {sock.path}: {exc.strerror or exc}; nothing was changed") from None
    if answer.truncated:
        raise TrafficError(f"HAProxy socket {sock.path}: answer to {command!r} exceeds {ANSWER_CAP} bytes")
    return answer.getvalue().decode("utf-8", errors="replace")


class HaproxyDriver:
    """Diverts and restores backends of one HAProxy through its stats socket."""

    def __init__(self, sock: HaproxySocket) -> None:
        self.sock = sock

    def __repr__(self) -> str:
        return f"HaproxyDriver({self.sock.path})"

    def state(self, service: HaproxyBackend) -> TrafficState:
        """The admin state of the service's and the mirror's servers."""
        states = self._admin_states(service.backend)
        names = (*service.servers, *service.mirror)
        missing = [name for name in names if name not in states]
        if missing:
            raise TrafficError(f"{self._target(service)}: no server {', '.join(missing)} in the backend")
        return TrafficState.of(self._target(service), ((name, states[name]) for name in names))

    def divert(self, service: HaproxyBackend, expected: TrafficState) -> TrafficState:
        if service.divert_state not in ("drain", "maint"):
            raise TrafficError(f"{self._target(service)}: divert_state must be drain or maint")
        wanted = [(name, "ready") for name in service.mirror]
        wanted += [(name, service.divert_state) for name in service.servers]
        return self._apply(service, expected, wanted)

    def restore(self, service: HaproxyBackend, expected: TrafficState, wanted: TrafficState) -> TrafficState:
        """Put the servers named in ``wanted`` into their states; servers left out stay as they are.

        Mirror servers are set last, so they keep taking traffic until the
        service's servers are back.
        """
        mirror = set(service.mirror)
        order = sorted(wanted.routes, key=lambda route: route[0] in mirror)
        return self._apply(service, expected, order)

    def _apply(self, service: HaproxyBackend, expected: TrafficState, wanted: list[tuple[str, str]]) -> TrafficState:
        self._check_wanted(service, wanted)
        current = self.state(service)
        now = dict(current.routes)
        if all(now[name] == state for name, state in wanted):
            return current
        if not _on_the_way(now, dict(expected.routes), dict(wanted)):
            raise TrafficConflict(
                f"{self._target(service)}: servers changed since the plan saw {expected.describe()}: "
                f"they are now {current.describe()}; nothing was changed"
            )
        after = {**now, **dict(wanted)}
        if "ready" not in after.values():
            raise TrafficError(f"{self._target(service)}: refusing a change that leaves no server ready")
        done: list[str] = []
        for name, state in wanted:
            if now[name] != state:
                self._set_state(service, name, state, done)
                done.append(f"{name} {state}")
        return self._verify(service, after)

    def _check_wanted(self, service: HaproxyBackend, wanted: Iterable[tuple[str, str]]) -> None:
        known = {name for name in (*service.servers, *service.mirror) if _NAME.match(name)}
        for name, state in wanted:
            if name not in known or state not in ADMIN_STATES:
                raise TrafficError(f"{self._target(service)}: cannot set server {name!r} to {state!r}")

    def _set_state(self, service: HaproxyBackend, server: str, state: str, done: list[str]) -> None:
        answer = runtime_command(self.sock, f"set server {service.backend}/{server} state {state}").strip()
        if answer:
            raise TrafficRefused(
                f"{self._target(service)}: set {server} {state} refused: {for_terminal(answer, 300)}; "
                f"already changed: {', '.join(done) or 'nothing'}"
            )

    def _verify(self, service: HaproxyBackend, after: Mapping[str, str]) -> TrafficState:
        deadline = time.monotonic() + service.verify_timeout
        while True:
            current = self.state(service)
            if dict(current.routes) == after:
                return current
            if time.monotonic() >= deadline:
                raise TrafficUnverified(
                    f"{self._target(service)}: after {service.verify_timeout:.1f} s servers are "
                    f"{current.describe()}, wanted {sorted(after.items())}"
                )
            time.sleep(POLL_INTERVAL)

    def _admin_states(self, backend: str) -> dict[str, str]:
        if not _NAME.match(backend):
            raise TrafficError(f"HAProxy {self.sock.path}: invalid backend name {for_terminal(backend, 80)!r}")
        answer = runtime_command(self.sock, f"show servers state {backend}")
        if answer.split("\n", 1)[0].strip() != _FORMAT_VERSION:
            raise TrafficRefused(f"HAProxy {self.sock.path} backend {backend}: {for_terminal(answer.strip(), 300)}")
        try:
            rows = parse_servers_state(answer)
        except ServersStateError as exc:
            raise ServersStateError(f"HAProxy {self.sock.path} backend {backend}: {exc}") from None
        return {row.server: row.admin_state for row in rows if row.backend == backend}

    def _target(self, service: HaproxyBackend) -> str:
        return f"HAProxy {self.sock.path} backend {service.backend}"


def _on_the_way(now: Mapping[str, str], expected: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Every server is as the plan saw it, or already as wanted: a change cut short by a crash resumes.

    Anything else means someone else changed a server, and it is left alone.
    """
    return all(state in (expected.get(name), wanted.get(name, expected.get(name))) for name, state in now.items())
