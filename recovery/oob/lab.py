"""The lab BMC over SSH: power, one-time boot and the serial console through a restricted command line.

The lab's BMC is reached the way an iDRAC or iLO command line or a console
server is reached: SSH with a key the BMC restricts to its commands, and the
BMC's host key pinned (``recovery.transport.ssh``). Its commands::

    power status <machine>                      prints "on" or "off"
    power on <machine> [normal|single-user|rescue]
    power off <machine> [graceful|forced]
    power cycle <machine>
    boot once <machine> normal|single-user|rescue
    rescue check <machine>                      the rescue image's sha256 against the recorded one
    console <machine>                           the serial line, both ways

A refused request exits with :data:`EXIT_REFUSED`, a mode the BMC cannot
boot with :data:`EXIT_UNSUPPORTED`, a failed one with :data:`EXIT_FAILED`;
the reason is on stderr. Unlike IPMI and Redfish, this BMC owns the kernel
command line, so a one-time single-user boot is expressible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import paramiko

from recovery.oob.base import (
    BmcEndpoint,
    BootMode,
    OobDriver,
    OobError,
    OobNotSupported,
    OobRefused,
    OobUnreachable,
    PowerState,
    oob_error,
)
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused, LoginRefused, SshSession, SshTarget

EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_UNSUPPORTED = 3
#: A BMC command returns once the request is taken; a slow answer means the BMC is in trouble.
COMMAND_TIMEOUT = 60.0
#: How long a closed console's exit status and reason may trail its end of output, in seconds.
STATUS_WAIT = 2.0
_ERRORS = {EXIT_REFUSED: OobRefused, EXIT_UNSUPPORTED: OobNotSupported}


@dataclass(frozen=True, kw_only=True)
class LabBmcEndpoint(BmcEndpoint):
    """A lab BMC's SSH endpoint: the key it accepts, its pinned host key, the machine's name there.

    The login is by key; ``password`` is unused and stays empty.
    """

    port: int = 22
    key_file: str
    host_key: str
    machine: str
    password: str = field(default="", repr=False)


class LabDriver(OobDriver):
    """Power, one-time boot and console of one lab machine through the lab BMC's SSH command line."""

    protocol = "lab BMC"
    endpoint: LabBmcEndpoint

    def __init__(self, endpoint: LabBmcEndpoint) -> None:
        super().__init__(endpoint)
        self._session = SshSession(self._target())

    def power_state(self) -> PowerState:
        answer = self._command("read power state", "power status")
        try:
            return PowerState(answer)
        except ValueError:
            raise self._error(OobError, "read power state", f"unexpected answer {answer!r}") from None

    def power_on(self) -> None:
        self._command("power on", "power on")

    def power_off(self, graceful: bool) -> None:
        how = "graceful" if graceful else "forced"
        self._command(f"{how} power off", "power off", how)

    def power_cycle(self) -> None:
        self._command("power cycle", "power cycle")

    def boot_once(self, mode: BootMode) -> None:
        self._command(f"one-time boot {mode.value}", "boot once", mode.value)

    def check_rescue(self) -> str:
        return self._command("check the rescue image", "rescue check")

    def console(self) -> BmcConsole:
        """The machine's serial line on its own SSH connection; the caller closes it."""
        session = SshSession(self._target())
        try:
            channel = session.channel(f"console {self.endpoint.machine}")
        except TransportError as exc:
            session.close()
            raise self._failure("open console", exc) from None
        return BmcConsole(self.endpoint, session, channel)

    def close(self) -> None:
        self._session.close()

    def _command(self, operation: str, verb: str, *arguments: str) -> str:
        command = " ".join((verb, self.endpoint.machine, *arguments))
        try:
            result = self._session.run(command, timeout=COMMAND_TIMEOUT)
        except TransportError as exc:
            raise self._failure(operation, exc) from None
        if result.exit_code != 0:
            kind = _ERRORS.get(result.exit_code, OobError)
            raise self._error(kind, operation, (result.stderr or result.stdout).decode(errors="replace").strip())
        return result.stdout.decode(errors="replace").strip()

    def _failure(self, operation: str, exc: TransportError) -> OobError:
        kind = OobRefused if isinstance(exc, (HostKeyRefused, LoginRefused)) else OobUnreachable
        return self._error(kind, operation, str(exc))

    def _target(self) -> SshTarget:
        endpoint = self.endpoint
        return SshTarget(
            name=f"{endpoint.host} BMC", address=endpoint.address, port=endpoint.port, user=endpoint.username,
            key_file=endpoint.key_file, host_keys=(endpoint.host_key,),
        )  # fmt: skip


class BmcConsole:
    """The serial line the BMC's ``console`` command relays, as a ConsoleStream on one SSH channel."""

    def __init__(self, endpoint: LabBmcEndpoint, session: SshSession, channel: paramiko.Channel) -> None:
        self.endpoint = endpoint
        self._session = session
        self._channel = channel

    def __repr__(self) -> str:
        return f"BmcConsole({self.endpoint.host}, {self.endpoint.where})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, timeout: float) -> bytes:
        self._channel.settimeout(max(timeout, 0.0))
        try:
            data = self._channel.recv(65536)
        except TimeoutError:
            return b""
        if not data:
            raise self._closed()
        return data

    def write(self, data: bytes) -> None:
        if self._channel.closed or self._channel.exit_status_ready():
            raise self._closed()
        self._channel.sendall(data)

    def close(self) -> None:
        self._channel.close()
        self._session.close()

    def _closed(self) -> OobError:
        """The error for a console the BMC ended, with its reason and exit status (they trail the EOF)."""
        self._channel.status_event.wait(STATUS_WAIT)
        reason = b""
        while self._channel.recv_stderr_ready():
            reason += self._channel.recv_stderr(4096)
        code = self._channel.recv_exit_status() if self._channel.exit_status_ready() else None
        detail = (reason.strip() or b"the BMC closed the console")[:500].decode(errors="replace")
        kind = _ERRORS.get(code or EXIT_FAILED, OobError)
        return oob_error(kind, self.endpoint, f"{LabDriver.protocol} at {self.endpoint.where}", "console", detail)
