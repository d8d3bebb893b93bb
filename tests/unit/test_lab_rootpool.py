"""The root pool builder guest: booted from the base image, with the blank pool disk where rootpool.sh looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.lab import rootpool
from recovery.lab.image import ImagePaths
from recovery.lab.vm import BootMode


@pytest.fixture
def image(tmp_path: Path) -> ImagePaths:
    base = tmp_path / "image"
    return ImagePaths(
        key="k", cache=tmp_path, disk=base / "base.qcow2", kernel=base / "vmlinuz", initrd=base / "initrd.img",
        operator_key=base / "op", root_password_file=base / "pw", log=base / "log",
        rescue_disk=base / "rescue.qcow2", rescue_sha256=base / "rescue.qcow2.sha256",
        root_pool=base / "rpool-x.qcow2",
    )  # fmt: skip


def test_builder_boots_the_base_image_with_the_blank_disk_as_rpool0(image: ImagePaths, tmp_path: Path) -> None:
    builder = rootpool.PoolBuilder(image, tmp_path / "build")
    builder.ssh_port, builder.http_port, builder.accel = 2222, 8080, "tcg"
    command = builder.qemu_command(BootMode.NORMAL)
    append = command[command.index("-append") + 1]
    assert append.split()[0] == "root=/dev/disk/by-id/virtio-LABROOT"
    devices = [command[i + 1] for i, word in enumerate(command) if word == "-device" and "virtio-blk" in command[i + 1]]
    assert devices == ["virtio-blk-pci,drive=root,serial=LABROOT", "virtio-blk-pci,drive=rpool,serial=RPOOL0"]
    assert "DISK=/dev/disk/by-id/virtio-RPOOL0" in rootpool.ROOT_POOL_SCRIPT.read_text()


def test_a_cached_root_pool_is_not_rebuilt(image: ImagePaths, monkeypatch: pytest.MonkeyPatch) -> None:
    image.root_pool.parent.mkdir(parents=True)
    image.root_pool.write_bytes(b"cached")
    monkeypatch.setattr(rootpool, "_build", lambda *args: pytest.fail("rebuilt a cached root pool"))
    rootpool.ensure_root_pool(image, progress=lambda line: None)
