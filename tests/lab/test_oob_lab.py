"""The lab driver against the lab BMC over SSH, powering a real lab guest; the BMC key does nothing else.

The refusals are checked with OpenSSH's own client, as a thief holding the
key would try them.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from recovery.lab.bmc import LabBmc
from recovery.lab.keys import generate_ed25519
from recovery.lab.vm import Guest
from recovery.oob.base import BootMode, OobRefused, PowerState
from recovery.oob.lab import EXIT_REFUSED, LabDriver
from recovery.transport.ssh import SshSession

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 300.0
POWER_TIMEOUT = 60.0
#: A multi-user guest under emulation takes a while to act on the power button.
SHUTDOWN_TIMEOUT = 180.0


def _ssh(bmc: LabBmc, key: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client with the BMC's host key pinned and nothing read from the user's config."""
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{bmc.port} {bmc.host_key}\n")
    command = [
        "ssh", "-F", "/dev/null", "-p", str(bmc.port), "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", *args,
    ]  # fmt: skip
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _qemu_pid(machine: Guest) -> int | None:
    try:
        pid = int(machine.pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(machine.dir).encode() in cmdline else None


def _guest_ssh(bmc: LabBmc, machine: Guest) -> SshSession:
    """SSH to the guest the BMC booted, once its sshd answers; host key pinned."""
    booted = bmc.machines.load(machine.name).guest()
    booted.wait_for_ssh(BOOT_TIMEOUT)
    return SshSession(booted.ssh_target(timeout=30.0))


def test_power_off_on_graceful_off_and_cycle(bmc_driver: LabDriver, bmc_machine: Guest, lab_bmc: LabBmc) -> None:
    if bmc_driver.power_state() is PowerState.OFF:
        bmc_driver.power_on()
        bmc_driver.wait_power(PowerState.ON, POWER_TIMEOUT)

    bmc_driver.power_off(graceful=False)
    bmc_driver.wait_power(PowerState.OFF, POWER_TIMEOUT)
    assert _qemu_pid(bmc_machine) is None

    bmc_driver.power_on()
    bmc_driver.wait_power(PowerState.ON, POWER_TIMEOUT)
    assert json.loads(bmc_machine.state_file.read_text())["mode"] == "normal"
    with _guest_ssh(lab_bmc, bmc_machine) as ssh:
        assert ssh.run("systemctl is-system-running --wait || true", timeout=BOOT_TIMEOUT).ok

    bmc_driver.power_off(graceful=True)
    bmc_driver.wait_power(PowerState.OFF, SHUTDOWN_TIMEOUT)
    assert b"reboot: Power down" in bmc_machine.serial_log.read_bytes()

    bmc_driver.power_cycle()  # off: powers on
    bmc_driver.wait_power(PowerState.ON, POWER_TIMEOUT)
    first = _qemu_pid(bmc_machine)
    bmc_driver.power_cycle()  # on: a new QEMU, as a cold restart
    bmc_driver.wait_power(PowerState.ON, POWER_TIMEOUT)
    assert _qemu_pid(bmc_machine) not in (None, first)

    bmc_driver.power_off(graceful=False)
    bmc_driver.wait_power(PowerState.OFF, POWER_TIMEOUT)


def test_boot_once_applies_to_one_boot_only(bmc_driver: LabDriver, bmc_machine: Guest, lab_bmc: LabBmc) -> None:
    bmc_driver.boot_once(BootMode.SINGLE_USER)
    assert lab_bmc.machines.load(bmc_machine.name).next_boot == "single-user"
    bmc_driver.power_cycle()
    bmc_driver.wait_power(PowerState.ON, POWER_TIMEOUT)
    assert json.loads(bmc_machine.state_file.read_text())["mode"] == "single-user"
    assert lab_bmc.machines.load(bmc_machine.name).next_boot == "normal"
    bmc_driver.power_off(graceful=False)
    bmc_driver.wait_power(PowerState.OFF, POWER_TIMEOUT)


def test_unknown_machine_is_refused(lab_bmc: LabBmc, bmc_key: Path) -> None:
    driver = LabDriver(lab_bmc.endpoint("us-web", "../bmc-web", bmc_key))
    with pytest.raises(OobRefused, match="no machine named"):
        driver.power_state()
    driver.close()


def test_bmc_with_another_host_key_is_refused(lab_bmc: LabBmc, bmc_key: Path, tmp_path: Path) -> None:
    impostor = generate_ed25519(tmp_path / "impostor", "impostor").split()
    endpoint = replace(lab_bmc.endpoint("eu-web", "bmc-web", bmc_key), host_key=f"{impostor[0]} {impostor[1]}")
    with pytest.raises(OobRefused, match="host key"):
        LabDriver(endpoint).power_state()


@pytest.mark.parametrize(
    "request_",
    ["bash", "bash -i", "power status bmc-web; bash", "scp -t /tmp", "power reset bmc-web", "console"],
)
def test_commands_outside_the_set_are_refused(lab_bmc: LabBmc, bmc_key: Path, tmp_path: Path, request_: str) -> None:
    done = _ssh(lab_bmc, bmc_key, tmp_path, f"{lab_bmc.user}@127.0.0.1", request_)
    assert done.returncode == EXIT_REFUSED
    assert "refused" in done.stderr
    assert done.stdout == ""


def test_the_key_gets_no_shell_terminal_or_forwarding(lab_bmc: LabBmc, bmc_key: Path, tmp_path: Path) -> None:
    login = _ssh(lab_bmc, bmc_key, tmp_path, "-T", f"{lab_bmc.user}@127.0.0.1")
    assert login.returncode == EXIT_REFUSED
    assert "not a BMC command: (none: an interactive login)" in login.stderr
    terminal = _ssh(lab_bmc, bmc_key, tmp_path, "-tt", f"{lab_bmc.user}@127.0.0.1")
    assert terminal.returncode == 255
    assert "PTY allocation request failed" in terminal.stderr
    tunnel = _ssh(lab_bmc, bmc_key, tmp_path, "-W", f"127.0.0.1:{lab_bmc.port}", f"{lab_bmc.user}@127.0.0.1")
    assert tunnel.returncode == 255
    assert "prohibited" in tunnel.stderr


def test_the_key_is_refused_from_another_address(lab_bmc: LabBmc, bmc_key: Path, tmp_path: Path) -> None:
    """from="127.0.0.1": the same key, presented from 127.0.0.2, opens nothing."""
    done = _ssh(lab_bmc, bmc_key, tmp_path, "-b", "127.0.0.2", f"{lab_bmc.user}@127.0.0.1", "power status bmc-web")
    assert done.returncode == 255
    assert "Permission denied" in done.stderr


def test_another_key_is_refused(lab_bmc: LabBmc, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_ed25519(other, "not-the-bmc-key")
    done = _ssh(lab_bmc, other, tmp_path, f"{lab_bmc.user}@127.0.0.1", "power status bmc-web")
    assert done.returncode == 255
    assert "Permission denied" in done.stderr
