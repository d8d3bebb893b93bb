"""The IPMI driver against the lab BMC: pyghmi's BMC server on 127.0.0.1 powering a real QEMU VM.

The VM has no network device and no disk: it sits in SeaBIOS, which is
enough for real power states through QMP, and ignores the ACPI power button
as a hung or hostile OS would. For the console it gets a one-sector disk
that echoes its serial line.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from recovery.lab.echo_guest import write_echo_disk
from recovery.lab.ipmi_bmc import LabIpmiBmc
from recovery.lab.ports import LOOPBACK, free_port
from recovery.oob.base import (
    BootMode,
    ConsoleStream,
    OobError,
    OobNotSupported,
    OobRefused,
    OobTimeout,
    OobUnreachable,
    PowerState,
)
from recovery.oob.ipmi import IpmiDriver, IpmiEndpoint

pytestmark = pytest.mark.integration

QEMU = "qemu-system-x86_64"
TINY_VM = [QEMU, "-machine", "q35", "-accel", "tcg", "-m", "64", "-display", "none", "-nodefaults", "-nic", "none"]
USER = "admin"
PASSWORD = "lab-ipmi-secret"
WAIT = 5.0
POLL = 0.1


@pytest.fixture
def lab_bmc() -> Iterator[LabIpmiBmc]:
    if not shutil.which(QEMU):
        pytest.fail(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    with LabIpmiBmc(TINY_VM, USER, PASSWORD) as bmc:
        yield bmc


def _driver(bmc: LabIpmiBmc, password: str = PASSWORD, rescue: str = "network", user: str = USER) -> IpmiDriver:
    endpoint = IpmiEndpoint(
        host="eu-web", address=bmc.host, port=bmc.port, username=user, password=password, rescue_device=rescue
    )
    return IpmiDriver(endpoint)


def _qemu_pids(bmc: LabIpmiBmc) -> list[int]:
    children = Path(f"/proc/{bmc.pid}/task/{bmc.pid}/children").read_text().split()
    return [int(pid) for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(QEMU.encode())]


def test_forced_off_on_and_cycle_follow_the_real_vm(lab_bmc: LabIpmiBmc) -> None:
    driver = _driver(lab_bmc)
    assert driver.power_state() is PowerState.ON
    assert len(_qemu_pids(lab_bmc)) == 1

    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, WAIT, POLL)
    assert _qemu_pids(lab_bmc) == []

    driver.power_on()
    driver.wait_power(PowerState.ON, WAIT, POLL)
    assert len(_qemu_pids(lab_bmc)) == 1

    driver.power_cycle()  # on: a hard reset
    driver.wait_power(PowerState.ON, WAIT, POLL)
    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, WAIT, POLL)
    driver.power_cycle()  # off: power on
    driver.wait_power(PowerState.ON, WAIT, POLL)
    assert len(lab_bmc.boots()) == 4  # the first start, power on, reset, cycle from off


def test_graceful_off_that_the_guest_ignores_times_out_then_forced_off_works(lab_bmc: LabIpmiBmc) -> None:
    driver = _driver(lab_bmc)
    driver.power_off(graceful=True)
    expected = r"^eu-web did not power off within 1\.5 s \(the IPMI BMC at .* still reports on\)"
    with pytest.raises(OobTimeout, match=expected):
        driver.wait_power(PowerState.OFF, 1.5, POLL)

    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, WAIT, POLL)


def test_boot_once_is_used_by_the_next_boot_only(lab_bmc: LabIpmiBmc) -> None:
    driver = _driver(lab_bmc, rescue="optical")
    driver.boot_once(BootMode.RESCUE)
    driver.power_cycle()
    driver.power_cycle()
    driver.boot_once(BootMode.NORMAL)
    driver.power_cycle()
    assert lab_bmc.boots() == ["default", "optical", "default", "hd"]


def test_single_user_is_not_expressible_over_ipmi(lab_bmc: LabIpmiBmc) -> None:
    with pytest.raises(OobNotSupported, match=r"^eu-web: one-time boot single-user over IPMI at .*boot = \"rescue\""):
        _driver(lab_bmc).boot_once(BootMode.SINGLE_USER)
    assert lab_bmc.boots() == ["default"]


def test_wrong_password_is_refused_without_showing_it(lab_bmc: LabIpmiBmc) -> None:
    wrong = "not-the-lab-password"
    driver = _driver(lab_bmc, password=wrong)
    expected = r"^eu-web: read power state over IPMI at 127\.0\.0\.1:\d+: login refused"
    with pytest.raises(OobRefused, match=expected) as refused:
        driver.power_state()
    assert wrong not in str(refused.value) and wrong not in repr(driver)
    assert _driver(lab_bmc).power_state() is PowerState.ON  # the right one still works


def test_unknown_user_is_refused_at_once(lab_bmc: LabIpmiBmc) -> None:
    expected = r"^eu-web: power on over IPMI at .*: login refused: Unauthorized name in RAKP2$"
    with pytest.raises(OobRefused, match=expected):
        _driver(lab_bmc, user="operator").power_on()


def test_unreachable_bmc_is_a_clear_timeout() -> None:
    endpoint = IpmiEndpoint(host="eu-web", address=LOOPBACK, port=free_port(), username=USER, password=PASSWORD)
    expected = r"^eu-web: read power state over IPMI at .*: the BMC did not answer \(timed out\)"
    with pytest.raises(OobUnreachable, match=expected):
        IpmiDriver(endpoint).power_state()


def test_a_host_that_is_off_is_started_by_a_cycle() -> None:
    with LabIpmiBmc(TINY_VM, USER, PASSWORD, powered_on=False) as bmc:
        driver = _driver(bmc)
        assert driver.power_state() is PowerState.OFF and _qemu_pids(bmc) == []
        driver.boot_once(BootMode.RESCUE)
        driver.power_cycle()
        driver.wait_power(PowerState.ON, WAIT, POLL)
        assert bmc.boots() == ["network"]


@pytest.fixture
def echo_bmc(tmp_path: Path) -> Iterator[LabIpmiBmc]:
    """The lab BMC with a VM whose boot sector echoes its serial line."""
    disk = write_echo_disk(tmp_path / "echo.img")
    with LabIpmiBmc([*TINY_VM, "-drive", f"file={disk},format=raw,if=ide"], USER, PASSWORD) as bmc:
        yield bmc


def _read_until(console: ConsoleStream, marker: bytes, timeout: float = WAIT) -> bytes:
    deadline = time.monotonic() + timeout
    seen = b""
    while marker not in seen and time.monotonic() < deadline:
        seen += console.read(deadline - time.monotonic())
    return seen


def test_serial_over_lan_reaches_the_vm_serial_line_and_back(echo_bmc: LabIpmiBmc) -> None:
    driver = _driver(echo_bmc)
    with driver.console() as console:
        console.write(b"zfs list -H\n")
        assert b"zfs list -H\n" in _read_until(console, b"-H\n")
        assert console.read(0.2) == b""
    with driver.console() as console:  # the first session let go of the console
        console.write(b"again\n")
        assert b"again\n" in _read_until(console, b"again\n")


def test_console_of_a_host_without_power_is_refused_by_the_bmc(echo_bmc: LabIpmiBmc) -> None:
    driver = _driver(echo_bmc)
    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, WAIT, POLL)
    expected = r"^eu-web: open console over IPMI Serial-over-LAN at .*: the BMC answered: SOL is disabled$"
    with pytest.raises(OobError, match=expected):
        driver.console()


def test_console_with_a_wrong_password_is_refused(echo_bmc: LabIpmiBmc) -> None:
    wrong = "not-the-lab-password"
    expected = r"^eu-web: open console over IPMI Serial-over-LAN at .*: login refused"
    with pytest.raises(OobRefused, match=expected) as refused:
        _driver(echo_bmc, password=wrong).console()
    assert wrong not in str(refused.value)


def test_stopping_the_bmc_ends_its_vm() -> None:
    with LabIpmiBmc(TINY_VM, USER, PASSWORD) as bmc:
        (qemu,) = _qemu_pids(bmc)
    with pytest.raises(ProcessLookupError):
        os.kill(qemu, 0)
