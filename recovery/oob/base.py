"""What every out-of-band (BMC) driver offers: power, one-time boot, waits with clear timeouts.

Contain and boot steps talk to hosts whose operating system cannot be
trusted, so they act below it: through the host's BMC. Drivers differ in what
they can say: IPMI and Redfish pick a boot *device* for the next boot, they
cannot put a kernel into single-user mode; a driver that cannot express a
boot mode says so with :class:`OobNotSupported` instead of doing something
close to it.

Requests return once the BMC accepted them; :meth:`OobDriver.wait_power`
confirms the result. Every message names the host and the operation, and
passes through the redactor, so a BMC password never reaches a log or the
journal.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import ClassVar

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from recovery.errors import AdapterError
from recovery.hostile import for_terminal
from recovery.secrets import REDACTOR
from recovery.transport.stream import ConsoleStream

#: How often :meth:`OobDriver.wait_power` asks the BMC, in seconds.
POLL_INTERVAL = 1.0


class OobError(AdapterError):
    """An out-of-band operation failed; the message names the host and the operation."""

    def __init__(self, message: str) -> None:
        super().__init__(REDACTOR.text(message))


class OobUnreachable(OobError):
    """The BMC did not answer in time; nothing is known to have changed."""

    transient = True


class OobRefused(OobError):
    """The BMC refused the credentials or the request."""


class OobNotSupported(OobError):
    """The driver cannot express this operation for this host."""


class OobTimeout(OobError):
    """The BMC accepted a request but the host did not reach the expected state in time."""

    transient = True


class PowerState(enum.Enum):
    ON = "on"
    OFF = "off"


class BootMode(enum.Enum):
    """What the next boot should come up as.

    ``rescue`` is a trusted rescue medium (network boot or a rescue ISO) with
    its own tools; ``single-user`` is the host's own system in maintenance
    mode, which needs a kernel command line and so a console or the lab's
    boot parameter.
    """

    NORMAL = "normal"
    SINGLE_USER = "single-user"
    RESCUE = "rescue"


@dataclass(frozen=True, kw_only=True)
class BmcEndpoint:
    """Where a host's BMC answers and how to log in, with the secret already resolved.

    ``host`` is the inventory name of the managed host, used in every message.
    The password is kept out of ``repr`` and registered with the redactor.
    """

    host: str
    address: str
    port: int
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        REDACTOR.add(self.password)

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


class OobDriver(abc.ABC):
    """Power and boot control of one host through its BMC."""

    #: Protocol name for messages ("IPMI", "Redfish").
    protocol: ClassVar[str]

    def __init__(self, endpoint: BmcEndpoint) -> None:
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r})"

    @property
    def host(self) -> str:
        return self.endpoint.host

    @abc.abstractmethod
    def power_state(self) -> PowerState:
        """The host's power state as the BMC reports it now."""

    @abc.abstractmethod
    def power_on(self) -> None:
        """Ask the BMC to power the host on; a host already on is left alone."""

    @abc.abstractmethod
    def power_off(self, graceful: bool) -> None:
        """Ask for a shutdown through the OS (``graceful``) or cut the power at once.

        A graceful request needs an OS that acts on it; a compromised or hung
        one may not, which :meth:`wait_power` then reports.
        """

    @abc.abstractmethod
    def power_cycle(self) -> None:
        """Start the host afresh from any state: a forced restart when on, power on when off.

        This is what makes a :meth:`boot_once` setting take effect.
        """

    @abc.abstractmethod
    def boot_once(self, mode: BootMode) -> None:
        """Make only the next boot come up in ``mode``; later boots are normal again.

        Raises :class:`OobNotSupported` for a mode the protocol cannot express.
        """

    def close(self) -> None:
        """End the driver's session with the BMC, if it keeps one (once per run, at its end)."""

    def check_rescue(self) -> str:
        """Whether the rescue medium the BMC would boot is the known-good one (what it says about it)."""
        raise OobNotSupported(f"{self.host}: the {self.protocol} BMC cannot show what its rescue medium holds")

    def console(self) -> ConsoleStream:
        """The host's serial console; the caller closes it."""
        raise OobNotSupported(f"{self.host}: the {self.protocol} driver has no console")

    def wait_power(self, state: PowerState, timeout: float, interval: float = POLL_INTERVAL) -> None:
        """Poll the BMC until the host is in ``state``; :class:`OobTimeout` after ``timeout`` seconds."""
        seen = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_result(lambda current: current is not state),
            retry_error_callback=lambda retry_state: retry_state.outcome.result(),
        )(self.power_state)
        if seen is not state:
            raise OobTimeout(
                f"{self.host} did not power {state.value} within {timeout:g} s"
                f" (the {self.protocol} BMC at {self.endpoint.where} still reports {seen.value})"
            )

    def _error(self, kind: type[OobError], operation: str, detail: str) -> OobError:
        return oob_error(kind, self.endpoint, f"{self.protocol} at {self.endpoint.where}", operation, detail)


def oob_error(kind: type[OobError], endpoint: BmcEndpoint, via: str, operation: str, detail: str) -> OobError:
    """An error of ``kind`` naming the host, the operation and the way to its BMC.

    ``detail`` may quote the BMC, which sits on the same network as the
    compromised host: it is made safe for a terminal.
    """
    return kind(f"{endpoint.host}: {operation} over {via}: {for_terminal(detail)}")
