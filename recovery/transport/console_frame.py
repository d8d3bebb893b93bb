"""One command's result on a serial console: what the host shell runs and how its reply is read back.

A serial line carries everything at once: the command's output, kernel
messages that the kernel writes straight to the UART (in the middle of a
line if it likes), other processes writing to /dev/console, flow control
bytes. So the host base64-encodes stdout and stderr (binary-safe, and an
alphabet that noise cannot hide in), prefixes every line with this command's
random marker, and ends with sizes, sha256 digests and the exit status::

    MARKER o <base64>               stdout, in order
    MARKER o-end <size> <sha256>    size on the host; digest of what was sent
    MARKER e <base64>               stderr, in order
    MARKER e-end <size> <sha256>
    MARKER exit <status>

The reader keeps only lines carrying the marker, cuts kernel messages out of
them, and accepts the output only if sizes and digests agree: anything else
is an error, never a guess. This defends against noise, not against a host
that wants to lie; nothing read from a compromised host can.

The host side is a shell function defined once per session
(:data:`HOST_FUNCTION`): each command arrives base64-encoded on one input
line, is written to a file on tmpfs (/run, so nothing touches the host's
disks) and run by the host's shell with stdin from /dev/null, so it can never
read the console's input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

from recovery.hostile import CappedBuffer, for_terminal
from recovery.transport.result import Result, TransportError

#: Base64 characters per output line: a multiple of 4, so every line decodes on its own.
LINE_WIDTH = 1024
#: An incomplete line longer than this is noise (a frame line is about 1 KB); only its tail is kept.
PENDING_MAX = 64 * 1024

#: A kernel message as the console prints it: timestamp, text, end of line; it may land inside our lines.
KERNEL_MESSAGE = re.compile(rb"\[ *\d+\.\d+\] [^\n]*\n")
#: XON and XOFF: flow control the host's tty may send in the middle of anything.
_FLOW_CONTROL = re.compile(rb"[\x11\x13]")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
#: ``<size> <sha256>``; sha256sum adds its "  -" for standard input.
#: Damaged lines described per reply; the rest are counted as "more".
MAX_DAMAGE = 20
_END = re.compile(rb"([0-9]{1,19}) ([0-9a-f]{64})(?:  -)?")

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Defined once in the host's shell; ``recovery_run MARKER BASE64_COMMAND CAP``. Every process
#: costs tens of milliseconds on a busy or emulated host, so an empty stream costs none. ``sed -u``
#: writes each line with one write(2), which the tty never interleaves with another process's.
HOST_FUNCTION = (
    "recovery_run() { local s n; "
    'printf %s "$2" | base64 -d >"$RECOVERY_DIR/c" || { printf \'%s garbled\\n\' "$1"; return; }; '
    '"${SHELL:-/bin/sh}" "$RECOVERY_DIR/c" </dev/null >"$RECOVERY_DIR/o" 2>"$RECOVERY_DIR/e"; '
    'set -- "$1" "$3" "$?"; '
    "for s in o e; do "
    'if [ -s "$RECOVERY_DIR/$s" ]; then '
    'n=$(wc -c <"$RECOVERY_DIR/$s"); '
    '[ "$n" -gt "$2" ] && truncate -s "$2" "$RECOVERY_DIR/$s"; '
    f'base64 -w {LINE_WIDTH} "$RECOVERY_DIR/$s" | sed -u "s/^/$1 $s /"; '
    'printf \'%s %s-end %s %s\\n\' "$1" "$s" "$n" "$(sha256sum <"$RECOVERY_DIR/$s")"; '
    f'else printf \'%s %s-end 0 {_EMPTY_SHA256}\\n\' "$1" "$s"; fi; '
    "done; "
    'printf \'%s exit %s\\n\' "$1" "$3"; }'
)


class ConsoleFrameError(TransportError):
    """The reply on the console was damaged or does not match what the host said it sent.

    Serial lines drop bytes: sending the command again may well get a whole reply.
    """


def without_noise(text: bytes) -> bytes:
    """``text`` without the kernel messages and flow control bytes the line mixed into it."""
    return KERNEL_MESSAGE.sub(b"", _FLOW_CONTROL.sub(b"", text))


def new_marker() -> bytes:
    """A marker no earlier command, and no output, can carry by chance."""
    return b"RCV" + secrets.token_hex(10).encode()


def host_command(marker: bytes, command: str, cap: int) -> bytes:
    """The input line that makes the host run ``command`` and frame its result with ``marker``.

    The command travels as base64, so quotes, newlines and its length (the
    agent's command is over 8 KB) need no escaping; the shell reads the line
    with line editing off, so no tty line limit applies.
    """
    encoded = base64.b64encode(command.encode()).decode("ascii")
    return f"recovery_run {marker.decode()} {encoded} {cap}\n".encode()


class _Stream:
    """One of stdout or stderr as it arrives: capped bytes, running digest, the host's own account."""

    def __init__(self, cap: int) -> None:
        self.data = CappedBuffer(cap)
        self.digest = hashlib.sha256()
        self.end: tuple[int, str] | None = None

    def add(self, chunk: bytes) -> None:
        self.data.write(chunk)
        self.digest.update(chunk)


class FrameReader:
    """Feed it console bytes; once :attr:`done`, :meth:`result` is the command's checked Result."""

    def __init__(self, marker: bytes, cap: int) -> None:
        self.marker = marker
        self.cap = cap
        self.streams = {b"o": _Stream(cap), b"e": _Stream(cap)}
        self.exit_code: int | None = None
        self.damage: list[str] = []
        self._pending = b""
        self._prefix = marker + b" "

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    def feed(self, data: bytes) -> None:
        text = without_noise(self._pending + data)
        *lines, self._pending = text.split(b"\n")
        if len(self._pending) > PENDING_MAX:
            self._pending = self._pending[-LINE_WIDTH * 2 :]
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def result(self, duration: float) -> Result:
        """The command's Result; :class:`ConsoleFrameError` if anything was lost or damaged."""
        if self.exit_code is None:
            raise ConsoleFrameError("the command's reply is incomplete")
        truncated = False
        for name, stream in self.streams.items():
            truncated |= self._check(name.decode(), stream)
        if self.damage:
            raise ConsoleFrameError("reply damaged on the console: " + "; ".join(self.damage[:3]))
        out, err = self.streams[b"o"].data, self.streams[b"e"].data
        return Result(out.getvalue(), err.getvalue(), self.exit_code, duration, truncated)

    def _line(self, line: bytes) -> None:
        start = line.rfind(self._prefix)
        if start < 0 or self.done:
            return
        kind, _, body = line[start + len(self._prefix) :].partition(b" ")
        if kind in self.streams:
            self._data(kind, body)
        elif kind in (b"o-end", b"e-end"):
            self._end(kind[:1], body)
        elif kind == b"exit" and body.isdigit() and len(body) <= 3:  # 0..255; a host may send 5000 digits
            self.exit_code = int(body)
        elif kind == b"garbled":
            self._damaged("the command arrived damaged on the host and was not run")
            self.exit_code = -1
        else:
            self._damaged(f"unknown line {for_terminal(line, 80)}")

    def _data(self, kind: bytes, body: bytes) -> None:
        stream = self.streams[kind]
        if stream.end is not None or not _BASE64.fullmatch(body):
            self._damaged(f"bad {kind.decode()} line")
            return
        try:
            stream.add(base64.b64decode(body, validate=True))
        except binascii.Error:
            self._damaged(f"undecodable {kind.decode()} line")

    def _end(self, kind: bytes, body: bytes) -> None:
        match = _END.fullmatch(body)
        if match is None or self.streams[kind].end is not None:
            self._damaged(f"bad {kind.decode()}-end line")
            return
        self.streams[kind].end = (int(match.group(1)), match.group(2).decode())

    def _damaged(self, what: str) -> None:
        """Remember what was wrong; a host that damages every line does not grow the list without end."""
        if len(self.damage) < MAX_DAMAGE:
            self.damage.append(what)
        elif len(self.damage) == MAX_DAMAGE:
            self.damage.append("... more damage not listed")

    def _check(self, name: str, stream: _Stream) -> bool:
        """Whether the host had more than the cap; records damage if the stream is not what was sent."""
        if stream.end is None:
            self._damaged(f"no end line for {name}")
            return False
        size, digest = stream.end
        if stream.digest.hexdigest() != digest:
            self._damaged(f"{name} does not match the host's sha256 ({min(size, self.cap)} bytes expected)")
        return size > self.cap
