"""OOB drivers without a BMC: mode and state mappings, waits and their messages, secrets kept out."""

from __future__ import annotations

from typing import Any

import pytest
import sushy

from recovery.oob import ipmi, redfish
from recovery.oob.base import BmcEndpoint, BootMode, OobDriver, OobError, OobNotSupported, OobTimeout, PowerState
from recovery.oob.ipmi import IpmiEndpoint
from recovery.oob.redfish import RedfishDriver, RedfishEndpoint

SECRET = "bmc-password-1234"


class ScriptedDriver(OobDriver):
    """Reports the power states it is given, one per poll, then the last one forever."""

    protocol = "test"

    def __init__(self, states: list[PowerState]) -> None:
        super().__init__(BmcEndpoint(host="eu-web", address="192.0.2.1", port=623, username="u", password=SECRET))
        self.states = states
        self.polls = 0

    def power_state(self) -> PowerState:
        self.polls += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def power_on(self) -> None: ...
    def power_off(self, graceful: bool) -> None: ...
    def power_cycle(self) -> None: ...
    def boot_once(self, mode: BootMode) -> None: ...


def test_wait_power_returns_once_the_state_is_reached() -> None:
    driver = ScriptedDriver([PowerState.ON, PowerState.ON, PowerState.OFF])
    driver.wait_power(PowerState.OFF, timeout=5, interval=0.01)
    assert driver.polls == 3


def test_wait_power_timeout_names_host_state_and_seconds() -> None:
    driver = ScriptedDriver([PowerState.ON])
    with pytest.raises(OobTimeout) as timeout:
        driver.wait_power(PowerState.OFF, timeout=0.05, interval=0.01)
    assert str(timeout.value) == (
        "eu-web did not power off within 0.05 s (the test BMC at 192.0.2.1:623 still reports on)"
    )


def test_password_stays_out_of_repr_and_messages() -> None:
    endpoint = IpmiEndpoint(host="eu-web", address="192.0.2.1", username="admin", password=SECRET)
    assert SECRET not in repr(endpoint) and SECRET not in repr(ipmi.IpmiDriver(endpoint))
    assert str(OobError(f"login as admin:{SECRET} failed")) == "login as admin:*** failed"


def test_console_is_not_supported_yet() -> None:
    with pytest.raises(OobNotSupported, match="^eu-web: the test driver has no console$"):
        ScriptedDriver([PowerState.ON]).console()


@pytest.mark.parametrize(
    ("mode", "rescue", "device"),
    [
        (BootMode.NORMAL, "network", "hd"),
        (BootMode.RESCUE, "network", "network"),
        (BootMode.RESCUE, "optical", "optical"),
        (BootMode.SINGLE_USER, "network", None),
    ],
)
def test_ipmi_boot_devices(mode: BootMode, rescue: ipmi.RescueDevice, device: str | None) -> None:
    assert ipmi.boot_device(mode, rescue) == device


@pytest.mark.parametrize(
    ("reply", "state"), [({"powerstate": "on"}, PowerState.ON), ({"powerstate": "off"}, PowerState.OFF)]
)
def test_ipmi_power_reply(reply: dict[str, Any], state: PowerState) -> None:
    assert ipmi.power_state_of(reply) is state


@pytest.mark.parametrize("reply", [{}, {"powerstate": "standby"}, {"error": "timeout"}])
def test_ipmi_unexpected_power_reply(reply: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unexpected power status reply"):
        ipmi.power_state_of(reply)


@pytest.mark.parametrize(
    ("redfish_state", "state"),
    [
        (sushy.PowerState.ON, PowerState.ON),
        (sushy.PowerState.POWERING_OFF, PowerState.ON),
        (sushy.PowerState.PAUSED, PowerState.ON),
        (sushy.PowerState.OFF, PowerState.OFF),
        (sushy.PowerState.POWERING_ON, PowerState.OFF),
    ],
)
def test_redfish_power_states(redfish_state: sushy.PowerState, state: PowerState) -> None:
    assert redfish.power_state_of(redfish_state) is state


@pytest.mark.parametrize("redfish_state", [None, "Standby"])
def test_redfish_unexpected_power_state(redfish_state: str | None) -> None:
    with pytest.raises(ValueError, match="unexpected PowerState"):
        redfish.power_state_of(redfish_state)


@pytest.mark.parametrize(
    ("mode", "has_image", "source"),
    [
        (BootMode.NORMAL, False, sushy.BootSource.HDD),
        (BootMode.RESCUE, False, sushy.BootSource.PXE),
        (BootMode.RESCUE, True, sushy.BootSource.CD),
        (BootMode.SINGLE_USER, True, None),
    ],
)
def test_redfish_boot_sources(mode: BootMode, has_image: bool, source: sushy.BootSource | None) -> None:
    assert redfish.boot_source(mode, has_image) == source


class RecordingSystem:
    """Stands in for a sushy System: records boot option calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def set_system_boot_options(self, target: Any = None, enabled: Any = None) -> None:
        self.calls.append((target, enabled))


def test_redfish_boot_override_is_for_one_boot_only(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = RedfishDriver(RedfishEndpoint(host="eu-web", address="192.0.2.1", username="admin", password=SECRET))
    system = RecordingSystem()
    monkeypatch.setattr(driver, "_system", lambda: system)
    driver.boot_once(BootMode.NORMAL)
    assert system.calls == [(sushy.BootSource.HDD, sushy.BootSourceOverrideEnabled.ONCE)]


def test_bmc_text_in_an_error_cannot_drive_the_terminal() -> None:
    error = ScriptedDriver([PowerState.ON])._error(OobError, "power on", "\x1b]0;owned\x07denied\x1b[2J")
    assert str(error) == "eu-web: power on over test at 192.0.2.1:623: denied"
