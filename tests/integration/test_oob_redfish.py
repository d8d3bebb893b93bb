"""The Redfish driver against the sushy-tools emulator (fake systems driver) on 127.0.0.1.

The emulator applies power changes about a second after the request, so
every power operation here goes through :meth:`wait_power`. It accepts a
``BootSourceOverrideEnabled`` of ``Once`` but always reports ``Continuous``;
that the driver asks for ``Once`` is checked in the unit tests.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import pytest
import sushy

from recovery.lab.mirror import Mirror
from recovery.lab.ports import LOOPBACK
from recovery.lab.redfish_bmc import LabRedfish
from recovery.oob.base import BootMode, OobNotSupported, OobRefused, OobUnreachable, PowerState
from recovery.oob.redfish import RedfishDriver, RedfishEndpoint

pytestmark = pytest.mark.integration

USER = "admin"
PASSWORD = "lab-redfish-secret"
WAIT = 5.0
POLL = 0.2


@pytest.fixture
def lab_redfish() -> Iterator[LabRedfish]:
    with LabRedfish("eu-web", USER, PASSWORD) as bmc:
        yield bmc


@pytest.fixture
def rescue_mirror(tmp_path: Path) -> Iterator[Mirror]:
    """A web server on 127.0.0.1 holding the rescue ISO the BMC fetches into virtual media."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "rescue.iso").write_bytes(b"\x00" * 4096)
    with Mirror(site) as server:
        yield server


def _driver(port: int, password: str = PASSWORD, **options: object) -> RedfishDriver:
    endpoint = RedfishEndpoint(
        host="eu-web", address=LOOPBACK, port=port, scheme="http", username=USER, password=password, **options
    )
    return RedfishDriver(endpoint)


def test_forced_off_on_cycle_and_graceful_off(lab_redfish: LabRedfish) -> None:
    driver = _driver(lab_redfish.port)
    assert driver.power_state() is PowerState.ON

    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, WAIT, POLL)
    driver.power_on()
    driver.wait_power(PowerState.ON, WAIT, POLL)

    driver.power_cycle()
    assert driver.power_state() is PowerState.OFF  # the restart has begun
    driver.wait_power(PowerState.ON, WAIT, POLL)

    driver.power_off(graceful=True)
    driver.wait_power(PowerState.OFF, WAIT, POLL)
    driver.power_off(graceful=True)  # already off: nothing to do


def test_a_host_that_is_off_is_started_by_a_cycle() -> None:
    with LabRedfish("eu-web", USER, PASSWORD, powered_on=False) as bmc:
        driver = _driver(bmc.port)
        assert driver.power_state() is PowerState.OFF
        driver.power_cycle()
        driver.wait_power(PowerState.ON, WAIT, POLL)


def test_boot_once_sets_the_override_target(lab_redfish: LabRedfish) -> None:
    driver = _driver(lab_redfish.port)
    driver.boot_once(BootMode.RESCUE)
    assert driver.boot_override()[0] == sushy.BootSource.PXE
    driver.boot_once(BootMode.NORMAL)
    assert driver.boot_override()[0] == sushy.BootSource.HDD


def test_rescue_boot_inserts_the_rescue_iso(lab_redfish: LabRedfish, rescue_mirror: Mirror) -> None:
    image = f"{rescue_mirror.url}rescue.iso"
    driver = _driver(lab_redfish.port, rescue_image=image, system_id=lab_redfish.system_id)
    driver.boot_once(BootMode.RESCUE)
    driver.boot_once(BootMode.RESCUE)  # the ISO is in already: left as it is

    assert driver.boot_override()[0] == sushy.BootSource.CD
    service = sushy.Sushy(lab_redfish.url, username=USER, password=PASSWORD)
    system = service.get_system(f"/redfish/v1/Systems/{lab_redfish.system_id}")
    devices = [media for manager in system.managers for media in manager.virtual_media.get_members()]
    inserted = [media.image for media in devices if media.inserted]
    assert inserted == [image]


def test_single_user_is_not_expressible_over_redfish(lab_redfish: LabRedfish) -> None:
    expected = r"^eu-web: one-time boot single-user over Redfish at .*boot = \"rescue\""
    with pytest.raises(OobNotSupported, match=expected):
        _driver(lab_redfish.port).boot_once(BootMode.SINGLE_USER)


def test_wrong_password_is_refused_without_showing_it(lab_redfish: LabRedfish) -> None:
    wrong = "not-the-lab-password"
    driver = _driver(lab_redfish.port, password=wrong)
    expected = r"^eu-web: read power state over Redfish at 127\.0\.0\.1:\d+: login refused \(HTTP 401\)$"
    with pytest.raises(OobRefused, match=expected) as refused:
        driver.power_state()
    assert wrong not in str(refused.value) and wrong not in repr(driver)


def test_bmc_that_never_answers_is_a_clear_timeout() -> None:
    with socket.socket() as silent:  # accepts connections into its backlog, never replies
        silent.bind((LOOPBACK, 0))
        silent.listen()
        driver = _driver(silent.getsockname()[1], timeout=0.5)
        expected = r"^eu-web: read power state over Redfish at .*: the BMC did not answer: timed out$"
        with pytest.raises(OobUnreachable, match=expected):
            driver.power_state()
