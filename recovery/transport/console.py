"""A root shell on a host's serial console, used like an SSH session: ``run(cmd) -> Result``.

In single-user mode there is no sshd; the console (through the BMC) is the
only way in. A session logs in (sulogin or login, see ``console_login``),
then sets the shell up for machine use with one line: line editing off
(readline would echo, wrap and send bracketed-paste escapes, and a tty in
canonical mode cuts input lines at 4095 bytes, while the ZFS agent's command
is longer), tty echo and XOFF off, an empty prompt, a scratch directory on
tmpfs and the framing function of ``console_frame``. :meth:`ConsoleSession.close`
puts the terminal back as it was and leaves the shell running: on a systemd
host, leaving the rescue shell would continue the boot into multi-user mode.

Nothing the host prints is shown or logged; results are bytes, messages
pass through :func:`recovery.hostile.for_terminal`.
"""

from __future__ import annotations

import base64
import shlex
import time
from pathlib import Path
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from recovery.hostile import OUTPUT_CAP, for_terminal
from recovery.errors import AdapterError
from recovery.secrets import REDACTOR
from recovery.transport.console_channel import ConsoleChannel, left_line
from recovery.transport.console_frame import (
    HOST_FUNCTION,
    ConsoleFrameError,
    FrameReader,
    host_command,
    new_marker,
)
from recovery.transport.console_login import INTERRUPT, SCREEN_MAX, ConsoleLogin
from recovery.transport.files import CopyTooLarge, private_file
from recovery.transport.stream import ConsoleStream
from recovery.transport.result import Result, TransportError

#: Single-user boot under emulation reaches sulogin in well under a minute; a loaded machine needs more.
LOGIN_TIMEOUT = 300.0
#: A file copied over the console: seconds allowed, plus one second per CONSOLE_RATE bytes.
CONSOLE_COPY_BASE = 60.0
CONSOLE_RATE = 10_000
#: Bytes of a file per line written by ``put`` (base64 makes 4/3 of it; a tty line holds 4095).
PUT_CHUNK = 2048
#: How long an interrupted command gets to give the shell back before the session reports the timeout.
INTERRUPT_GRACE = 3.0
#: Longest single wait for console output, so deadlines are kept.
READ_SLICE = 0.5
#: How long :meth:`ConsoleSession.close` waits for the shell to confirm it restored the terminal.
RESTORE_WAIT = 5.0
T = TypeVar("T")

_SETUP = (
    "set +o emacs +o vi +o history +H; "
    "RECOVERY_TTY=${RECOVERY_TTY:-$(stty -g)}; RECOVERY_PS1=${RECOVERY_PS1-$PS1}; "
    "stty -echo -icanon min 1 time 0 -ixoff; PS1=; "
    f"{HOST_FUNCTION}; "
    "RECOVERY_DIR=$(mktemp -d /run/recovery-console.XXXXXX) && printf '%s-%s\\n' RECOVERY-READY {marker}\n"
)
_RESTORE = (
    'stty "$RECOVERY_TTY"; PS1=$RECOVERY_PS1; rm -rf "$RECOVERY_DIR"; '
    "unset RECOVERY_TTY RECOVERY_PS1 RECOVERY_DIR; unset -f recovery_run; set -o emacs -o history; "
    "printf '%s-%s\\n' RECOVERY-RESTORED {marker}\n"
)


def setup_line(marker: bytes) -> tuple[bytes, bytes]:
    """The setup line and what it prints when it worked (never the same bytes as its echo)."""
    return _SETUP.replace("{marker}", marker.decode()).encode(), b"RECOVERY-READY-" + marker


def restore_line(marker: bytes) -> tuple[bytes, bytes]:
    """The line that undoes the setup, and what it prints once done."""
    return _RESTORE.replace("{marker}", marker.decode()).encode(), b"RECOVERY-RESTORED-" + marker


class ConsoleSession:
    """Commands as root over a serial console; the session takes the stream over and closes it."""

    def __init__(
        self,
        stream: ConsoleStream,
        root_password: str | None,
        name: str = "console",
        login_timeout: float = LOGIN_TIMEOUT,
        output_cap: int = OUTPUT_CAP,
    ) -> None:
        if root_password:
            REDACTOR.add(root_password)
        self.stream = stream
        self.name = name
        self.login_timeout = login_timeout
        self.output_cap = output_cap
        self._password = root_password
        self._ready = False
        self._channel: ConsoleChannel | None = None

    def __repr__(self) -> str:
        return f"ConsoleSession({self.name!r})"

    def open(self) -> Self:
        """Log in and set the shell up; a session already open is left as it is."""
        if not self._ready:
            setup, ready = setup_line(new_marker())
            login = ConsoleLogin(self.stream, self._password, self.name)
            self._guarded(lambda: login.reach_shell(setup, ready, self.login_timeout))
            self._ready = True
        return self

    def open_channel(self, command: str, farewell: bytes) -> ConsoleChannel:
        """``command`` in the foreground of the shell, its input the line (see :mod:`console_channel`).

        The console is one line: the channel holds it until it is closed, and
        :meth:`run` closes it first (``farewell`` asks the program to leave).
        """
        self._end_channel()
        self.open()
        marker = new_marker()
        self._write(command.encode() + b"; " + left_line(marker))
        self._channel = ConsoleChannel(self._read, self._write, farewell, marker, self.name, self._channel_ended)
        return self._channel

    def run(self, command: str, timeout: float = 300.0) -> Result:
        """Run a shell command as root; output kept as bytes, capped; stdin is /dev/null."""
        self._end_channel()
        self.open()
        start = time.monotonic()
        marker = new_marker()
        reader = FrameReader(marker, self.output_cap)
        self._guarded(lambda: self.stream.write(host_command(marker, command, self.output_cap)))
        if not self._read_until_done(reader, start + timeout):
            self._interrupt(reader)
            raise TransportError(f"{self.name}: command did not finish within its timeout: {for_terminal(command, 60)}")
        try:
            return reader.result(time.monotonic() - start)
        except ConsoleFrameError as exc:
            raise ConsoleFrameError(f"{self.name}: {exc}") from None

    def get(self, remote: str, local: str, max_bytes: int) -> int:
        """Copy ``remote`` to a new private file ``local``; the bytes come framed and hashed like any output."""
        return self.fetch(f"cat -- {shlex.quote(remote)}", local, max_bytes)

    def fetch(self, command: str, local: str, max_bytes: int, timeout: float | None = None, large: bool = False) -> int:
        """The standard output of ``command`` into a new private file ``local``, at most ``max_bytes``
        (``large`` changes nothing: the console is one line, and its cap refuses what it cannot carry)."""
        if max_bytes > self.output_cap:
            raise CopyTooLarge(f"{self.name}: {for_terminal(command, 120)}: up to {max_bytes} bytes is more than "
                               f"the console carries in one reply ({self.output_cap}); copy it over SSH")
        result = self.run(command, timeout=timeout or CONSOLE_COPY_BASE + max_bytes / CONSOLE_RATE)
        if not result.ok:
            raise TransportError(f"{self.name}: {for_terminal(command, 120)} failed: "
                                 f"{for_terminal(result.stderr, 200)}", transient=False)
        if result.truncated or len(result.stdout) > max_bytes:
            raise CopyTooLarge(f"{self.name}: {for_terminal(command, 120)}: larger than the {max_bytes} bytes expected")
        with private_file(local) as sink:
            sink.write(result.stdout)
        return len(result.stdout)

    def put(self, local: str, remote: str) -> None:
        """Write the file ``local`` to ``remote`` (mode 0600) in base64 lines the tty takes whole."""
        data = Path(local).read_bytes()
        target = shlex.quote(remote)
        self._checked(f"(umask 077 && : > {target})", remote)
        for start in range(0, len(data), PUT_CHUNK):
            chunk = base64.b64encode(data[start:start + PUT_CHUNK]).decode()
            self._checked(f"printf %s {chunk} | base64 -d >> {target}", remote)

    def _checked(self, command: str, remote: str) -> None:
        result = self.run(command, timeout=60)
        if not result.ok:
            raise TransportError(f"{self.name}: writing {for_terminal(remote, 120)} failed: "
                                 f"{for_terminal(result.stderr, 200)}", transient=False)

    def close(self) -> None:
        """Give the terminal back as it was (the shell keeps running) and close the stream.

        The shell must have read the whole restore line before the stream
        closes: a console server may drop what it has not delivered yet, and
        half a line would wait in the shell for the next session. A console
        that is already gone has nothing left to restore.
        """
        try:
            self._end_channel()
            if self._ready:
                line, done = restore_line(new_marker())
                self._guarded(lambda: self.stream.write(line))
                self._await(done, RESTORE_WAIT)
        except TransportError:
            pass
        finally:
            self._ready = False
            self.stream.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _read_until_done(self, reader: FrameReader, deadline: float) -> bool:
        while not reader.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            reader.feed(self._read(min(READ_SLICE, remaining)))
        return True

    def _interrupt(self, reader: FrameReader) -> None:
        """Ctrl-C to the command's process group, so the shell takes the next command."""
        self._guarded(lambda: self.stream.write(INTERRUPT))
        self._read_until_done(reader, time.monotonic() + INTERRUPT_GRACE)

    def _await(self, text: bytes, timeout: float) -> bool:
        """Whether ``text`` shows up within ``timeout`` seconds."""
        seen, deadline = b"", time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            seen = (seen + self._read(min(READ_SLICE, remaining)))[-SCREEN_MAX:]
            if text in seen:
                return True
        return False

    def _read(self, timeout: float) -> bytes:
        return self._guarded(lambda: self.stream.read(timeout))

    def _write(self, data: bytes) -> None:
        self._guarded(lambda: self.stream.write(data))

    def _end_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def _channel_ended(self, interrupted: bool) -> None:
        self._channel = None
        self._ready = self._ready and not interrupted

    def _guarded(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except TransportError:
            raise
        except (AdapterError, OSError, EOFError) as exc:  # whatever carries the line, it is gone
            raise TransportError(f"{self.name}: console lost: {exc}") from None
