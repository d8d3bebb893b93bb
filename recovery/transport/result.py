"""The one shape every transport (SSH, serial console) returns."""

from __future__ import annotations

from dataclasses import dataclass

from recovery.errors import AdapterError


@dataclass(frozen=True)
class Result:
    """Outcome of one command on a managed host.

    Output stays as bytes: a compromised host may print anything, and only
    :func:`recovery.hostile.for_terminal` turns it into text for a person.
    """

    stdout: bytes
    stderr: bytes
    exit_code: int
    duration: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class TransportError(AdapterError):
    """A session could not be opened or a command could not be delivered (a retry may help)."""

    transient = True
