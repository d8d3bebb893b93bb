"""Redfish through sushy: ``ComputerSystem.Reset`` and a boot source override ``Once``.

Like IPMI, Redfish picks a boot *source* for the next boot and cannot ask
for a kernel's single-user mode. A rescue boot starts a trusted rescue ISO
from virtual media when the endpoint names one (inserted into the BMC's CD or
DVD device, then ``Cd`` once), otherwise the network (``Pxe`` once).

One sushy connection is kept per driver: a BMC may hold a login session for
it, and BMCs have few session slots to spare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import sushy
from sushy import exceptions as sushy_errors

from recovery.oob.base import (
    BmcEndpoint,
    BootMode,
    OobDriver,
    OobError,
    OobNotSupported,
    OobRefused,
    OobUnreachable,
    PowerState,
)

REDFISH_PORT = 443
#: A BMC that takes longer than this to answer one request is treated as unreachable.
REQUEST_TIMEOUT = 30.0
#: sushy retries 5xx answers; a BMC that keeps failing should be reported, not waited for.
SERVER_SIDE_RETRIES = 2
_CD_MEDIA = {sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD}
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RedfishEndpoint(BmcEndpoint):
    """A Redfish service.

    ``verify`` is True, False or the path of a CA bundle for the BMC's TLS
    certificate. ``system_id`` is the ``Id`` of the ComputerSystem, needed
    when the service has several. ``rescue_image`` is the URL of a rescue ISO the BMC fetches
    into virtual media; without it a rescue boot uses the network.
    """

    port: int = REDFISH_PORT
    scheme: str = "https"
    verify: bool | str = True
    system_id: str | None = None
    rescue_image: str | None = None
    timeout: float = REQUEST_TIMEOUT

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}"


def power_state_of(redfish_state: str | None) -> PowerState:
    """On only once fully on, off only once fully off: a transition still counts as the old state."""
    if redfish_state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF, sushy.PowerState.PAUSED):
        return PowerState.ON
    if redfish_state in (sushy.PowerState.OFF, sushy.PowerState.POWERING_ON):
        return PowerState.OFF
    raise ValueError(f"unexpected PowerState {redfish_state!r}")


def boot_source(mode: BootMode, has_rescue_image: bool) -> sushy.BootSource | None:
    """The boot source override for ``mode``, or None when Redfish cannot express it."""
    if mode is BootMode.NORMAL:
        return sushy.BootSource.HDD
    if mode is BootMode.RESCUE:
        return sushy.BootSource.CD if has_rescue_image else sushy.BootSource.PXE
    return None


class RedfishDriver(OobDriver):
    """Power and one-time boot of one ComputerSystem through its BMC's Redfish service."""

    protocol = "Redfish"
    endpoint: RedfishEndpoint

    def __init__(self, endpoint: RedfishEndpoint) -> None:
        super().__init__(endpoint)
        self._root: sushy.Sushy | None = None

    def power_state(self) -> PowerState:
        state = self._call("read power state", lambda system: system.power_state)
        try:
            return power_state_of(state)
        except ValueError as exc:
            raise self._error(OobError, "read power state", str(exc)) from None

    def power_on(self) -> None:
        if self.power_state() is PowerState.OFF:
            self._reset("power on", sushy.ResetType.ON)

    def power_off(self, graceful: bool) -> None:
        if self.power_state() is PowerState.ON:
            if graceful:
                self._reset("graceful power off", sushy.ResetType.GRACEFUL_SHUTDOWN)
            else:
                self._reset("forced power off", sushy.ResetType.FORCE_OFF)

    def power_cycle(self) -> None:
        if self.power_state() is PowerState.ON:
            self._reset("power cycle", sushy.ResetType.FORCE_RESTART)
        else:
            self._reset("power cycle", sushy.ResetType.ON)

    def boot_once(self, mode: BootMode) -> None:
        operation = f"one-time boot {mode.value}"
        source = boot_source(mode, self.endpoint.rescue_image is not None)
        if source is None:
            raise self._error(
                OobNotSupported,
                operation,
                "Redfish can only choose a boot source, not a kernel's single-user mode;"
                " use a console that can edit the kernel command line, or boot = \"rescue\"",
            )
        if source is sushy.BootSource.CD:
            self._call(operation, self._insert_rescue_image)
        self._call(
            operation,
            lambda system: system.set_system_boot_options(source, enabled=sushy.BootSourceOverrideEnabled.ONCE),
        )

    def boot_override(self) -> tuple[str | None, str | None]:
        """The pending boot source override as (target, enabled), as the BMC reports it."""
        boot = self._call("read boot override", lambda system: system.boot)
        return boot.target, boot.enabled

    def _reset(self, operation: str, reset: sushy.ResetType) -> None:
        self._call(operation, lambda system: system.reset_system(reset))

    def _insert_rescue_image(self, system: sushy.resources.system.system.System) -> None:
        """Put the rescue ISO into the first CD/DVD virtual media device of the system's managers."""
        image = self.endpoint.rescue_image
        for manager in system.managers:
            for media in manager.virtual_media.get_members():
                if _CD_MEDIA.isdisjoint(media.media_types):
                    continue
                if media.inserted and media.image == image:
                    return
                if media.inserted:
                    media.eject_media()
                media.insert_media(image, inserted=True, write_protected=True)
                return
        raise OobNotSupported(f"the BMC offers no CD or DVD virtual media for {image}")

    def _call(self, operation: str, action: Callable[[sushy.resources.system.system.System], T]) -> T:
        try:
            return action(self._system())
        except sushy_errors.ConnectionError as exc:
            self._root = None
            raise self._error(OobUnreachable, operation, f"the BMC did not answer: {_cause(exc)}") from None
        except sushy_errors.AccessError as exc:
            self._root = None
            raise self._error(OobRefused, operation, f"login refused (HTTP {exc.status_code})") from None
        except OobNotSupported as exc:
            raise self._error(OobNotSupported, operation, str(exc)) from None
        except sushy_errors.SushyError as exc:
            raise self._error(OobError, operation, str(exc)) from None

    def _system(self) -> sushy.resources.system.system.System:
        """The managed ComputerSystem, read afresh so power state and boot settings are current."""
        if self._root is None:
            endpoint = self.endpoint
            self._root = sushy.Sushy(
                endpoint.url,
                username=endpoint.username,
                password=endpoint.password,
                verify=endpoint.verify,
                read_timeout=endpoint.timeout,
                connect_timeout=endpoint.timeout,
                server_side_retries=SERVER_SIDE_RETRIES,
                server_side_retries_delay=1,
            )
        systems = self._root.get_system_collection()
        if self.endpoint.system_id:
            return systems.get_member(f"{systems.path.rstrip('/')}/{self.endpoint.system_id}")
        members = systems.get_members()
        if len(members) != 1:
            names = ", ".join(member.identity for member in members) or "none"
            raise sushy_errors.SushyError(f"the service has {len(members)} systems ({names}): set system_id")
        return members[0]


def _cause(exc: sushy_errors.ConnectionError) -> str:
    """requests' innermost reason (refused, timed out), not its chain of wrapper reprs."""
    text = str(exc)
    for marker in ("timed out", "Connection refused", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text
