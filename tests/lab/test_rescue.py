"""Boot environments and the rescue image, through the lab BMC as a recovery drives them.

One machine for the module, its boots chained: it comes up from
``rpool/ROOT/debian``; a clone becomes ``bootfs`` and the next boot runs the
clone (so a recovery can switch boot environments); then ``boot once
rescue`` + ``power cycle`` through the lab driver boot the known-good rescue
image, whose console gives root a shell without a password and which
imports no pool until asked. A tampered copy of the rescue image is refused
before anything starts. From the rescue system the restore's swap of a boot
environment and its undo run with the rescue image's own agent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from recovery.lab.bmc import LabBmc
from recovery.lab.image import ImagePaths, check_rescue
from recovery.lab.vm import TANK_DEVICE, Guest
from recovery.oob.base import BootMode, OobRefused, PowerState
from recovery.oob.lab import LabDriver
from recovery.transport.console import ConsoleSession
from recovery.zfs import swap
from recovery.zfs.client import AgentClient
from recovery.zfs.swap import SwapNames

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 300.0
POWER_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def machine(bmc_guest: Callable[[str], Guest]) -> Guest:
    return bmc_guest("bmc-be")


@pytest.fixture(scope="module")
def driver(lab_bmc: LabBmc, machine: Guest, bmc_key: Path) -> Iterator[LabDriver]:
    lab = LabDriver(lab_bmc.endpoint("eu-web", machine.name, bmc_key))
    try:
        yield lab
    finally:
        lab.close()


def _boot(driver: LabDriver, lab_bmc: LabBmc, machine: Guest, mode: BootMode) -> tuple[Guest, float]:
    """``boot once`` + ``power cycle`` through the BMC; the guest as booted and the monotonic start."""
    driver.boot_once(mode)
    started = time.monotonic()
    driver.power_cycle()
    driver.wait_power(PowerState.ON, POWER_TIMEOUT)
    return lab_bmc.machines.load(machine.name).guest(), started


def _ssh_up(driver: LabDriver, lab_bmc: LabBmc, machine: Guest) -> Guest:
    booted, started = _boot(driver, lab_bmc, machine, BootMode.NORMAL)
    booted.wait_for_ssh(BOOT_TIMEOUT)
    print(f"{machine.name}: normal boot from the root pool to SSH in {time.monotonic() - started:.1f} s")
    return booted


def _lines(guest: Guest, command: str) -> list[str]:
    result = guest.run(command)
    assert result.ok, result.stderr
    return result.stdout.decode().split()


def test_host_boots_its_bootfs_and_a_bootfs_switch_boots_the_clone(
    driver: LabDriver, lab_bmc: LabBmc, machine: Guest
) -> None:
    host = _ssh_up(driver, lab_bmc, machine)
    assert _lines(host, "findmnt -no SOURCE /") == ["rpool/ROOT/debian"]
    assert _lines(host, "zpool get -H -o value bootfs rpool") == ["rpool/ROOT/debian"]
    switch = (
        "zfs snapshot rpool/ROOT/debian@before-incident"
        " && zfs clone -o canmount=noauto -o mountpoint=/ rpool/ROOT/debian@before-incident rpool/ROOT/restored"
        " && zpool set bootfs=rpool/ROOT/restored rpool"
        " && touch /after-the-snapshot"
        f" && zpool create -f -O mountpoint=none tank {TANK_DEVICE}"
    )
    assert _lines(host, f"{switch} && echo switched") == ["switched"]

    host = _ssh_up(driver, lab_bmc, machine)
    assert _lines(host, "findmnt -no SOURCE /") == ["rpool/ROOT/restored"]
    assert _lines(host, "test -e /after-the-snapshot || echo absent") == ["absent"]
    # tank came after the snapshot, so the clone has no cache file: the import scan found it.
    assert _lines(host, "zpool list -H -o name tank") == ["tank"]


def test_rescue_boot_gives_root_a_console_and_leaves_the_pools_alone(
    driver: LabDriver, lab_bmc: LabBmc, machine: Guest, lab_image: ImagePaths
) -> None:
    _, started = _boot(driver, lab_bmc, machine, BootMode.RESCUE)
    session = ConsoleSession(driver.console(), None, name=machine.name, login_timeout=BOOT_TIMEOUT)
    try:
        session.open()  # no password is configured: a password prompt would fail the login
        print(f"{machine.name}: rescue boot to a root shell on the console in {time.monotonic() - started:.1f} s")
        who = session.run("hostname; cat /etc/recovery-rescue; findmnt -no SOURCE /; zpool list -H -o name")
        assert who.ok, who.stderr
        assert who.stdout.decode().splitlines() == [
            "rescue", f"recovery lab rescue image {lab_image.key}", "/dev/disk/by-id/virtio-RESCUE",
        ]  # fmt: skip
        idle = session.run("systemctl is-active ssh apache2 cron systemd-networkd zfs-import-cache zfs-mount")
        assert set(idle.stdout.split()) <= {b"inactive", b"failed"}, idle.stdout
        imported = session.run(
            "zpool import -N -R /mnt/host rpool && zpool import -N -R /mnt/host tank"
            " && zpool get -H -o value bootfs rpool && zfs get -H -o value mounted rpool/ROOT/restored",
            timeout=120,
        )
        assert imported.ok, imported.stderr
        assert imported.stdout.split() == [b"rpool/ROOT/restored", b"no"]
        _swap_the_boot_environment_and_back(session)
        assert session.run("zpool export tank && zpool export rpool", timeout=120).ok
    finally:
        session.close()
    check_rescue(lab_image.rescue_disk, lab_image.rescue_sha256)  # the cached media did not change
    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, POWER_TIMEOUT)


def test_a_tampered_rescue_image_is_refused(lab_image: ImagePaths, lab_bmc: LabBmc, bmc_key: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "rescue.qcow2"
    shutil.copyfile(lab_image.rescue_disk, tampered)
    with tampered.open("r+b") as disk:
        disk.seek(1 << 20)
        byte = disk.read(1)
        disk.seek(1 << 20)
        disk.write(bytes([byte[0] ^ 0xFF]))
    target = Guest(replace(lab_image, rescue_disk=tampered), tmp_path / "run", "bmc-tampered")
    lab_bmc.add(target)
    lab = LabDriver(lab_bmc.endpoint("eu-web", target.name, bmc_key))
    try:
        lab.boot_once(BootMode.RESCUE)
        with pytest.raises(OobRefused, match="changed since it was built"):
            lab.power_cycle()
        assert lab.power_state() is PowerState.OFF
    finally:
        lab.close()
        target.stop()


def _swap_the_boot_environment_and_back(session: ConsoleSession) -> None:
    """The restore's swap of a boot environment with the rescue image's own agent: the pool boots the
    clean clone, the compromised one is sealed; undo puts bootfs and the names back. Nothing destroyed."""
    be = "rpool/ROOT/restored"
    client = AgentClient(session, timeout=120)
    show = lambda: session.run(  # noqa: E731
        "zpool get -H -o value bootfs rpool; zfs list -H -o name,readonly,canmount,mountpoint -r rpool/ROOT",
        timeout=60).stdout.decode()
    guid = lambda: session.run(f"zfs get -H -o value guid {be}", timeout=60).stdout.strip()  # noqa: E731
    compromised = guid()
    assert session.run(f"zfs snapshot {be}@clean", timeout=60).ok
    names = SwapNames.for_run(be, "T1")
    swap.restore(client, names, f"{be}@clean")
    assert swap.restored(client, names) and guid() != compromised
    state = show()
    assert state.splitlines()[0] == be  # bootfs followed the restore, not the renamed quarantine
    assert f"{be}\toff\tnoauto\t/mnt/host\n" in state  # canmount kept; "/" stored, shown below the altroot
    assert f"{names.quarantine}\ton\toff\t/mnt/host\n" in state  # sealed, kept with its snapshots
    swap.undo(client, names)
    assert swap.undone(client, names) and guid() == compromised
    state = show()
    assert state.splitlines()[0] == be and f"{be}\toff\tnoauto\t/mnt/host\n" in state
    assert f"{names.restored_aside}\ton\toff\t/mnt/host\n" in state
