"""IPMI over LAN (RMCP+) through pyghmi: chassis power control, one-time boot device, and SOL console.

IPMI chooses a boot *device* for the next boot (``set_bootdev`` with
``persist=False``); it has no word for a kernel's single-user mode. A rescue
boot therefore means a rescue medium the firmware can start: the network
(PXE) or an optical drive holding a rescue disc.

Each operation logs in, acts and logs out: a recovery run talks to a BMC a
few times a minute, and a session kept open between steps would only go
stale while the host reboots.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from pyghmi.exceptions import IpmiException
from pyghmi.ipmi.command import Command

from recovery.oob.base import BootMode, OobDriver, OobError, OobNotSupported, OobRefused, PowerState
from recovery.oob.ipmi_endpoint import IpmiEndpoint, RescueDevice, ipmi_failure
from recovery.oob.sol import SolConsole

T = TypeVar("T")


def boot_device(mode: BootMode, rescue_device: RescueDevice) -> str | None:
    """The pyghmi boot device for ``mode``, or None when IPMI cannot express it."""
    if mode is BootMode.NORMAL:
        return "hd"
    if mode is BootMode.RESCUE:
        return rescue_device
    return None


def power_state_of(reply: dict[str, Any]) -> PowerState:
    """The power state in a pyghmi ``get_power`` reply (``{'powerstate': 'on'}``)."""
    try:
        return PowerState(reply["powerstate"])
    except (KeyError, ValueError):
        raise ValueError(f"unexpected power status reply {reply!r}") from None


class IpmiDriver(OobDriver):
    """Power and one-time boot of one host through its BMC's IPMI LAN interface."""

    protocol = "IPMI"
    endpoint: IpmiEndpoint

    def __init__(self, endpoint: IpmiEndpoint) -> None:
        super().__init__(endpoint)

    def power_state(self) -> PowerState:
        reply = self._call("read power state", lambda command: command.get_power())
        try:
            return power_state_of(reply)
        except ValueError as exc:
            raise self._error(OobError, "read power state", str(exc)) from None

    def power_on(self) -> None:
        self._call("power on", lambda command: command.set_power("on"))

    def power_off(self, graceful: bool) -> None:
        operation = "graceful power off" if graceful else "forced power off"
        self._call(operation, lambda command: command.set_power("shutdown" if graceful else "off"))

    def power_cycle(self) -> None:
        # pyghmi's "boot": power on when off, hard reset when on.
        self._call("power cycle", lambda command: command.set_power("boot"))

    def boot_once(self, mode: BootMode) -> None:
        operation = f"one-time boot {mode.value}"
        device = boot_device(mode, self.endpoint.rescue_device)
        if device is None:
            raise self._error(
                OobNotSupported,
                operation,
                "IPMI can only choose a boot device, not a kernel's single-user mode;"
                " use a console that can edit the kernel command line, or boot = \"rescue\"",
            )
        reply = self._call(operation, lambda command: command.set_bootdev(device, persist=False))
        if isinstance(reply, dict) and "error" in reply:
            raise self._error(OobRefused, operation, str(reply["error"]))

    def _call(self, operation: str, action: Callable[[Command], T]) -> T:
        with self._session(operation) as command:
            try:
                return action(command)
            except IpmiException as exc:
                raise self._failure(operation, exc) from None

    @contextmanager
    def _session(self, operation: str) -> Iterator[Command]:
        try:
            command = Command(**self.endpoint.login(), keepalive=False)
        except IpmiException as exc:
            raise self._failure(operation, exc) from None
        try:
            yield command
        finally:
            command.ipmi_session.logout()

    def _failure(self, operation: str, exc: IpmiException) -> OobError:
        message = exc.args[0] if exc.args else None
        return ipmi_failure(self.endpoint, f"IPMI at {self.endpoint.where}", operation, message)

    def console(self) -> SolConsole:
        """The host's serial console through Serial-over-LAN; a console held by another client is taken over."""
        return SolConsole(self.endpoint)
