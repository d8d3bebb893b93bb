"""The byte stream a serial console is, whoever carries it (a BMC's SOL, the lab BMC, a pty).

Transports consume it; out-of-band drivers produce it. It lives here so the
console transport needs nothing of the drivers, and a stream that breaks
raises an :class:`~recovery.errors.AdapterError` of its own kind.
"""

from __future__ import annotations

from typing import Protocol


class ConsoleStream(Protocol):
    """A host's serial console as bytes both ways, whatever carries it."""

    def read(self, timeout: float) -> bytes:
        """Bytes that arrived, as soon as there are any; ``b""`` after ``timeout`` seconds of silence."""
        ...

    def write(self, data: bytes) -> None:
        """Send ``data`` to the console; returns once the far end has taken it."""
        ...

    def close(self) -> None:
        ...
