"""An operator's terminal on a lab guest's serial line (``recover lab console HOST``).

The guest may be compromised, so what it sends never reaches the terminal
raw: escape sequences are removed and control bytes shown, chunk by chunk
(``recovery.hostile.for_terminal``). Keystrokes go to the guest as typed;
Ctrl-] detaches, as in telnet. The serial line has one owner at a time.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recovery.hostile import for_terminal

DETACH = b"\x1d"  # Ctrl-]
CHUNK = 4096


def attach(serial_socket: Path) -> None:
    """Bridge stdin/stdout and the guest's serial socket until Ctrl-] or the guest closes it."""
    with socket.socket(socket.AF_UNIX) as line, _raw_terminal():
        line.connect(str(serial_socket))
        _say("attached; Ctrl-] detaches\r\n")
        while _pump(line):
            pass
        _say("\r\ndetached\r\n")


def _pump(line: socket.socket) -> bool:
    """Move one batch of bytes either way; False once the operator detaches or the line closes."""
    stdin = sys.stdin.fileno()
    ready, _, _ = select.select([line, stdin], [], [])
    if line in ready:
        data = line.recv(CHUNK)
        if not data:
            return False
        _say(for_terminal(data.replace(b"\r", b""), limit=CHUNK * 4).replace("\n", "\r\n"))
    if stdin in ready:
        keys = os.read(stdin, CHUNK)
        if not keys or DETACH in keys:
            return False
        line.sendall(keys)
    return True


def _say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@contextmanager
def _raw_terminal() -> Iterator[None]:
    """Raw mode while attached (keys go to the guest one by one), restored on every exit."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
