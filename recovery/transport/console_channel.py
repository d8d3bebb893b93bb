"""A program in the foreground of a console's shell: the serial line is its input and output.

The console session types the program's command line (echo is off) followed
by ``printf LEFT-<marker>``, so the shell prints the marker once the program
ended (after a Ctrl-C the shell drops the rest of the line, and maybe a line
sent meanwhile: a fresh marker is asked for until the shell answers). Until then everything sent reaches the
program, never the shell; once the marker was seen, the channel refuses to
send (the shell would take the bytes as a command).

What is read comes in whole lines with the line's noise (kernel messages,
flow control) cut out, as :mod:`console_frame` does for commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from recovery.transport.channel import ChannelClosed
from recovery.transport.console_frame import LINE_WIDTH, PENDING_MAX, new_marker, without_noise
from recovery.transport.console_login import INTERRUPT
from recovery.transport.result import TransportError

#: How long a program gets to leave after its farewell, and after Ctrl-C, before the console is lost.
LEAVE_WAIT = 15.0
INTERRUPT_WAIT = 10.0


def left_line(marker: bytes) -> bytes:
    """The shell line that prints the channel's marker (the printed bytes are not the line's own)."""
    return b"printf '%%s-%%s\\n' RECOVERY-LEFT %s\n" % marker


class ConsoleChannel:
    """Made by :meth:`ConsoleSession.open_channel`; ``ended`` is called once the shell has the line back
    (with True after a Ctrl-C: a shell interrupted may have lost a line, so it is set up again)."""

    def __init__(self, read: Callable[[float], bytes], write: Callable[[bytes], None], farewell: bytes,
                 marker: bytes, name: str, ended: Callable[[bool], None]) -> None:
        self._read, self._write = read, write
        self._farewell, self._name, self._ended = farewell, name, ended
        self._left = b"RECOVERY-LEFT-" + marker
        self._pending = b""
        self._gone = False

    @property
    def closed(self) -> bool:
        return self._gone

    def send(self, data: bytes) -> None:
        if self._gone:
            raise ChannelClosed(f"{self._name}: the program on the console has ended")
        self._write(data)

    def receive(self, timeout: float) -> bytes:
        """Whole lines, without noise; :class:`ChannelClosed` once the shell said the program left."""
        if self._gone:
            raise ChannelClosed(f"{self._name}: the program on the console has ended")
        text = without_noise(self._pending + self._read(timeout))
        complete, newline, self._pending = text.rpartition(b"\n")
        if len(self._pending) > PENDING_MAX:
            self._pending = self._pending[-LINE_WIDTH * 2:]
        lines = complete + newline
        if self._left in lines:
            self._leave()
            lines = lines[:lines.index(self._left)]
            if not lines:
                raise ChannelClosed(f"{self._name}: the program on the console has ended")
        return lines

    def close(self) -> None:
        """Farewell; failing that, Ctrl-C until the shell answers; failing that, the console is lost."""
        if self._gone:
            return
        if self._farewell:
            self._write(self._farewell)
            if self._await_left(LEAVE_WAIT):
                return
        self._write(INTERRUPT)
        answered = self._shell_answers()
        self._leave(interrupted=True)
        if not answered:
            raise TransportError(f"{self._name}: the program on the console did not end; the console is not usable")

    def _shell_answers(self) -> bool:
        """Whether the shell runs lines again after a Ctrl-C: an interrupted bash may drop a line or two
        sent meanwhile, so a fresh marker is asked for each second until one comes back."""
        deadline = time.monotonic() + INTERRUPT_WAIT
        seen = b""
        while time.monotonic() < deadline:
            marker = new_marker()
            self._write(left_line(marker))
            until = time.monotonic() + 1.0
            while (remaining := until - time.monotonic()) > 0:
                seen = (seen + without_noise(self._read(min(0.5, remaining))))[-PENDING_MAX:]
                if b"RECOVERY-LEFT-" + marker in seen:
                    return True
        return False

    def _await_left(self, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.receive(min(0.5, remaining))
            except ChannelClosed:
                return True
        return False

    def _leave(self, interrupted: bool = False) -> None:
        self._gone = True
        self._pending = b""
        self._ended(interrupted)
