"""From whatever a serial console shows to a root shell that has run the session's setup line.

A console may be met at any point: early boot, sulogin's "Give root password
for maintenance" (single-user mode), a getty's ``login:``, or a shell that is
already there, maybe left by an earlier session. The screen is judged only
once the line has gone quiet, so a prompt is the last thing shown (kernel
messages aside, which the kernel prints whenever it likes). When nothing is
recognised for a while, an empty line makes sulogin, login and a shell show
their prompt again; failing that, the setup line is sent as if a shell were
there (a shell with an empty prompt shows nothing). A shell waiting for the
rest of a command gets Ctrl-C.

The password goes out only in answer to a password prompt, a moment after it
(sulogin discards what arrives while it prints), and at most twice: a refused
password stops the login rather than being retried against a host.
"""

from __future__ import annotations

import enum
import re
import time

from recovery.hostile import for_terminal
from recovery.transport.console_frame import KERNEL_MESSAGE
from recovery.transport.stream import ConsoleStream
from recovery.transport.result import TransportError

#: Seconds of silence after which the screen is judged.
QUIET = 0.5
#: Seconds without anything recognised before the console is nudged.
NUDGE_AFTER = 3.0
MAX_PASSWORDS = 2
#: Ctrl-C: a shell drops a half-read command (one an earlier session left behind).
INTERRUPT = b"\x03"
#: Console output kept for judging prompts and for error messages.
SCREEN_MAX = 16 * 1024


class ConsoleLoginError(TransportError):
    """No root shell could be reached on the console (locked root, refused password): never retried."""

    transient = False


class Screen(enum.Enum):
    LOCKED = "root account locked"
    PASSWORD = "password prompt"
    LOGIN = "login prompt"
    SHELL = "shell prompt"
    CONTINUATION = "shell waiting for the rest of a command"
    UNKNOWN = "nothing recognised"


_PROMPTS = (
    (Screen.LOCKED, re.compile(rb"root account is locked")),
    (Screen.PASSWORD, re.compile(rb"(?:Control-D to continue\)|[Pp]assword): *\Z")),
    (Screen.LOGIN, re.compile(rb"login: *\Z")),
    (Screen.SHELL, re.compile(rb"[#$] *\Z")),
    (Screen.CONTINUATION, re.compile(rb"(?:\A|\n)> *\Z")),
)


def screen_of(shown: bytes) -> Screen:
    """What the console is waiting for, judged from what it showed last (kernel messages ignored)."""
    text = KERNEL_MESSAGE.sub(b"", shown)
    for screen, pattern in _PROMPTS:
        if pattern.search(text):
            return screen
    return Screen.UNKNOWN


class ConsoleLogin:
    """One login dialogue on ``stream``; :meth:`reach_shell` returns once ``ready`` was printed."""

    def __init__(self, stream: ConsoleStream, password: str | None, name: str) -> None:
        self.stream = stream
        self.password = password
        self.name = name
        self.shown = b""
        self.passwords_sent = 0
        self.last_sent: Screen | None = None
        self.last_activity = time.monotonic()

    def reach_shell(self, setup: bytes, ready: bytes, timeout: float) -> None:
        """Answer prompts until the shell ran ``setup`` (which prints ``ready``)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            data = self.stream.read(min(QUIET, remaining))
            if data:
                self.shown = (self.shown + data)[-SCREEN_MAX:]
                self.last_activity = time.monotonic()
                if ready in KERNEL_MESSAGE.sub(b"", self.shown):
                    return
            else:
                self._answer(screen_of(self.shown), setup)
        raise ConsoleLoginError(
            f"{self.name}: no root shell on the console within {timeout:g} s; it shows: "
            + for_terminal(KERNEL_MESSAGE.sub(b"", self.shown)[-300:])
        )

    def _answer(self, screen: Screen, setup: bytes) -> None:
        if screen is Screen.LOCKED:
            raise ConsoleLoginError(f"{self.name}: the root account is locked; sulogin gives no shell")
        if self.last_sent is Screen.PASSWORD and b"incorrect" in self.shown:
            raise ConsoleLoginError(f"{self.name}: the console refused the root password")
        if screen is Screen.PASSWORD:
            self._send(screen, self._password_line())
        elif screen is Screen.LOGIN:
            self._send(screen, b"root\n")
        elif screen is Screen.SHELL:
            self._send(screen, setup)
        elif screen is Screen.CONTINUATION:
            self._send(screen, INTERRUPT)
        elif time.monotonic() - self.last_activity >= NUDGE_AFTER:
            self._nudge(setup)

    def _password_line(self) -> bytes:
        if self.password is None:
            raise ConsoleLoginError(f"{self.name}: the console asks for a password and none is configured")
        if self.passwords_sent >= MAX_PASSWORDS:
            raise ConsoleLoginError(f"{self.name}: the console asked for the password again after it was sent")
        self.passwords_sent += 1
        return self.password.encode() + b"\n"

    def _nudge(self, setup: bytes) -> None:
        """An empty line first (prompts show again), then the setup line (a silent shell)."""
        if self.last_sent is Screen.UNKNOWN:
            self._send(Screen.SHELL, setup)
        else:
            self._send(Screen.UNKNOWN, b"\n")

    def _send(self, answering: Screen, line: bytes) -> None:
        self.stream.write(line)
        self.last_sent = answering
        self.last_activity = time.monotonic()
        self.shown = b""
