"""The QEMU command line of a lab guest keeps every packet on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.lab.image import ImagePaths
from recovery.lab.vm import BootMode, Guest, GuestError, LanAddress, LanSwitch


@pytest.fixture
def image(tmp_path: Path) -> ImagePaths:
    base = tmp_path / "image"
    return ImagePaths(
        key="k", cache=tmp_path, disk=base / "base.qcow2", kernel=base / "vmlinuz", initrd=base / "initrd.img",
        operator_key=base / "op", root_password_file=base / "pw", log=base / "log",
        rescue_disk=base / "rescue.qcow2", rescue_sha256=base / "rescue.qcow2.sha256",
        root_pool=base / "rpool-x.qcow2",
    )  # fmt: skip


def options(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def test_networks_are_restricted_user_net_and_the_lab_lan_only(image: ImagePaths, tmp_path: Path) -> None:
    lan = LanSwitch(tmp_path)
    guest = Guest(image, tmp_path, "web", lan=lan, lan_address=LanAddress.for_host_number(11))
    guest.ssh_port, guest.http_port, guest.accel = 2222, 8080, "tcg"
    command = guest.qemu_command(BootMode.NORMAL)
    assert "-nodefaults" in command
    assert "-nic" not in command and "-net" not in command
    user, vde = options(command, "-netdev")
    assert user.startswith("user,") and "restrict=on" in user.split(",")
    forwards = [part for part in user.split(",") if part.startswith("hostfwd=")]
    assert forwards == ["hostfwd=tcp:127.0.0.1:2222-:22", "hostfwd=tcp:127.0.0.1:8080-:80"]
    assert vde == f"vde,id=lan,sock={lan.dir}"


def test_single_user_boot_asks_for_the_rescue_target(image: ImagePaths, tmp_path: Path) -> None:
    guest = Guest(image, tmp_path, "web")
    guest.accel = "tcg"
    (append,) = options(guest.qemu_command(BootMode.SINGLE_USER), "-append")
    assert append.endswith("systemd.unit=rescue.target")
    (append,) = options(guest.qemu_command(BootMode.NORMAL), "-append")
    assert "systemd.unit" not in append


def test_host_boots_follow_the_root_pool_bootfs_from_its_disks(image: ImagePaths, tmp_path: Path) -> None:
    guest = Guest(image, tmp_path, "web")
    guest.accel = "tcg"
    for mode in (BootMode.NORMAL, BootMode.SINGLE_USER):
        command = guest.qemu_command(mode)
        (append,) = options(command, "-append")
        assert append.split()[:2] == ["root=zfs:AUTO", "rpool=rpool"]
        assert options(command, "-device")[:2] == [
            "virtio-blk-pci,drive=rpool,serial=RPOOL0", "virtio-blk-pci,drive=tank,serial=TANK0",
        ]  # fmt: skip
        assert not any(str(image.rescue_disk) in drive for drive in options(command, "-drive"))


def test_rescue_boot_runs_the_rescue_media_unchanged_before_the_hosts_disks(image: ImagePaths, tmp_path: Path) -> None:
    guest = Guest(image, tmp_path, "web")
    guest.ssh_port, guest.http_port, guest.accel = 2222, 8080, "tcg"
    command = guest.qemu_command(BootMode.RESCUE)
    (append,) = options(command, "-append")
    assert append.split()[0] == "root=/dev/disk/by-id/virtio-RESCUE"
    assert "systemd.unit" not in append
    rescue, rpool, tank = options(command, "-drive")
    assert f"file={image.rescue_disk}" in rescue.split(",") and "snapshot=on" in rescue.split(",")
    assert f"file={guest.root_disk}" in rpool.split(",") and f"file={guest.data_disk}" in tank.split(",")
    assert [d.rsplit("serial=", 1)[1] for d in options(command, "-device") if "virtio-blk" in d] == [
        "RESCUE", "RPOOL0", "TANK0",
    ]  # fmt: skip
    assert options(command, "-netdev") == options(guest.qemu_command(BootMode.NORMAL), "-netdev")


def test_a_guest_without_the_root_pool_disk_names_the_builder(image: ImagePaths, tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="build_lab_image"):
        Guest(image, tmp_path, "web").start()


def test_lan_addresses_are_in_the_lab_range_with_distinct_macs() -> None:
    a, b = LanAddress.for_host_number(11), LanAddress.for_host_number(12)
    assert (a.ip, b.ip) == ("10.77.0.11", "10.77.0.12")
    assert a.mac != b.mac
    with pytest.raises(ValueError):
        LanAddress.for_host_number(255)
