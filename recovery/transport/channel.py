"""A long-running program on a host, as bytes both ways: what a served agent talks through.

``run(cmd)`` costs a shell and its processes per command, hundreds of
milliseconds on a slow or emulated host; a channel opened once costs a few
milliseconds per exchange. Over SSH it is one exec channel; on a serial
console the program runs in the foreground of the console's shell, so the
line itself is its input (see :meth:`ConsoleSession.open_channel`).

Bytes from the host are the host's: a channel only carries them, its reader
decides what to believe.
"""

from __future__ import annotations

from typing import Protocol

from recovery.transport.result import TransportError


class ChannelClosed(TransportError):
    """The program ended (or its channel did): nothing more comes from it, nothing more reaches it."""


class Channel(Protocol):
    def send(self, data: bytes) -> None:
        """Hand ``data`` to the program's standard input."""
        ...

    def receive(self, timeout: float) -> bytes:
        """What the program wrote since, as soon as there is any; ``b""`` after ``timeout`` seconds of
        silence; :class:`ChannelClosed` once it ended."""
        ...

    @property
    def closed(self) -> bool:
        """Known to have ended: sending to it would reach nobody (or, on a console, the shell)."""
        ...

    def close(self) -> None:
        """End the program (its farewell first, so it can leave in order) and the channel."""
        ...
