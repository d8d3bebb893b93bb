"""The one base of every failure the run can recover from, and whether trying again may help.

Adapters (SSH and console transports, BMC drivers, traffic drivers, the ZFS
agent client) and steps raise a :class:`Fault`. Its ``transient`` flag is the
only thing the engine's retry looks at: a dropped connection or a BMC that did
not answer in time may succeed on the next attempt; a changed host key, a
refused login, tools that differ from golden, or a reply of the wrong shape
never will, and retrying them would only hide the signal (or, for a host key,
keep knocking on an impostor's door).
"""

from __future__ import annotations


class Fault(Exception):
    """A failure with a message for the operator; ``transient`` says whether a retry may succeed."""

    transient: bool = False

    def __init__(self, message: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class AdapterError(Fault):
    """Something outside this process (a host, a BMC, a DNS server, a socket) failed or said no."""


def is_transient(exc: BaseException) -> bool:
    """The retry predicate: only faults that say a retry may help are retried."""
    return isinstance(exc, Fault) and exc.transient
