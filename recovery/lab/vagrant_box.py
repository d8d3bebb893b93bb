"""A vagrant-libvirt box made from the lab's own root pool disk, added under a name keyed by its recipe.

No box can be downloaded here, and a careful team runs its lab from its own
fleet's image anyway: the box is the cached root pool disk (root on ZFS, boot
environment rpool/ROOT/debian) as ``box.img``, with the kernel and initrd
beside it. The image has no boot loader, so the box's Vagrantfile boots the
kernel directly, as the QEMU lab does, and gives every machine a data disk
with the same virtio serial as the QEMU lab's tank disk, so files/pool.sh
finds it at the same path.

The box name carries a key of the root pool disk (itself keyed by the base
image recipe) and of the box layout: a changed recipe makes a new name, and
an unchanged one is found in ``vagrant box list`` and not rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import subprocess
import tarfile
import time
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab import image as lab_image
from recovery.lab.image import ImagePaths, Progress
from recovery.lab.vm import DATA_DISK_SIZE, TANK_SERIAL, BootMode

BOX_PREFIX = "recovery-lab-"
#: Bump when the box layout changes in a way the box Vagrantfile text does not show.
BOX_FORMAT = "1"
PROVIDER = "libvirt"
QCOW2_MAGIC = b"QFI\xfb"
GIB = 1024**3
#: Vagrant must never phone home (version checks, box update checks).
VAGRANT_ENV = {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1"}
VAGRANT_TIMEOUT = 900.0

BOX_VAGRANTFILE = """\
# The recovery lab's root-on-ZFS image (boot environment rpool/ROOT/debian).
# It has no boot loader: the kernel and initrd shipped beside box.img are booted
# directly, as the QEMU lab does. Root logs in with the lab operator's key.
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  # Known, so Vagrant skips guest detection: dozens of SSH round trips, 14-40 s per machine under TCG.
  config.vm.guest = :debian
  config.ssh.username = "root"
  config.ssh.private_key_path = {operator_key}
  config.ssh.insert_key = false
  config.ssh.sudo_command = "%c"
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(__dir__, "vmlinuz")
    libvirt.initrd = File.join(__dir__, "initrd.img")
    libvirt.cmd_line = {cmd_line}
    libvirt.graphics_type = "none"
    libvirt.video_type = "none"
    libvirt.memory = 1024
    # pool tank's disk, where files/pool.sh looks for it: /dev/disk/by-id/virtio-{tank_serial}
    libvirt.storage :file, size: {tank_size}, serial: {tank_serial_q}
  end
end
"""


class BoxError(Exception):
    """The box could not be written or added to Vagrant."""


def box_vagrantfile(image: ImagePaths) -> str:
    """The Vagrantfile inside the box: direct kernel boot into the ZFS boot environment, tank disk."""
    return BOX_VAGRANTFILE.format(
        operator_key=json.dumps(str(image.operator_key)),
        cmd_line=json.dumps(BootMode.NORMAL.kernel_args()),
        tank_size=json.dumps(DATA_DISK_SIZE),
        tank_serial=TANK_SERIAL,
        tank_serial_q=json.dumps(TANK_SERIAL),
    )


def box_name(image: ImagePaths) -> str:
    """``recovery-lab-<key>``: the root pool disk's name (its recipe key) and the box layout, hashed."""
    h = hashlib.sha256()
    for part in (BOX_FORMAT, image.root_pool.name, box_vagrantfile(image)):
        h.update(part.encode() + b"\0")
    return BOX_PREFIX + h.hexdigest()[:12]


def virtual_size_gib(disk: Path) -> int:
    """The disk's virtual size in whole GiB, read from the qcow2 header (what metadata.json wants)."""
    with disk.open("rb") as handle:
        header = handle.read(32)
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise BoxError(f"{disk} is not a qcow2 image")
    (size,) = struct.unpack(">Q", header[24:32])
    return max(1, math.ceil(size / GIB))


def box_metadata(image: ImagePaths) -> dict[str, object]:
    return {"provider": PROVIDER, "format": "qcow2", "virtual_size": virtual_size_gib(image.root_pool)}


def write_box(image: ImagePaths, target: Path) -> Path:
    """An uncompressed tar (the disk is compressed qcow2 already): metadata, Vagrantfile, disk, kernel."""
    if not image.root_pool.exists():
        raise BoxError(f"no root pool disk {image.root_pool}: build it with recovery.lab.rootpool.build_lab_image()")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w") as box:
        _add_bytes(box, "metadata.json", json.dumps(box_metadata(image), indent=2).encode() + b"\n")
        _add_bytes(box, "Vagrantfile", box_vagrantfile(image).encode())
        box.add(image.root_pool, arcname="box.img")
        box.add(image.kernel, arcname="vmlinuz")
        box.add(image.initrd, arcname="initrd.img")
    return target


def _add_bytes(box: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    box.addfile(info, io.BytesIO(data))


def vagrant_env(**extra: str) -> dict[str, str]:
    """The environment every vagrant command of the lab runs with."""
    return {**os.environ, **VAGRANT_ENV, **extra}


def installed_boxes(prefix: list[str] | None = None) -> set[str]:
    """Names of the boxes Vagrant has for the libvirt provider."""
    done = _vagrant([*(prefix or []), "vagrant", "box", "list", "--machine-readable"])
    return parse_box_list(done)


def parse_box_list(machine_readable: str) -> set[str]:
    """Box names from ``vagrant box list --machine-readable`` (``ts,,box-name,NAME`` lines)."""
    names: set[str] = set()
    provider_of: dict[str, str] = {}
    last = ""
    for line in machine_readable.splitlines():
        fields = line.split(",", 3)
        if len(fields) < 4:
            continue
        if fields[2] == "box-name":
            last = fields[3]
            names.add(last)
        elif fields[2] == "box-provider" and last:
            provider_of[last] = fields[3]
    return {name for name in names if provider_of.get(name, PROVIDER) == PROVIDER}


def ensure_box(image: ImagePaths, progress: Progress = lab_image._say, prefix: list[str] | None = None) -> str:
    """The lab box's name, building and adding it first if Vagrant does not have it yet.

    ``prefix`` runs vagrant through something (e.g. ``ip netns exec``); the
    box is written beside the cached image and deleted once Vagrant has it.
    """
    name = box_name(image)
    if name in installed_boxes(prefix):
        progress(f"vagrant box {name} already added")
        return name
    with lab_image._locked(image.cache / "build.lock"):
        if name in installed_boxes(prefix):
            return name
        started = time.monotonic()
        superseded = sorted(n for n in installed_boxes(prefix) if n.startswith(BOX_PREFIX))
        staged = image.cache / "vagrant" / f".{name}.{os.getpid()}.box"
        try:
            write_box(image, staged)
            _vagrant([*(prefix or []), "vagrant", "box", "add", "--force", "--name", name, str(staged)])
        finally:
            staged.unlink(missing_ok=True)
        remove_boxes(superseded, prefix)
    progress(f"vagrant box {name} built and added in {time.monotonic() - started:.1f} s")
    return name


def remove_boxes(names: list[str], prefix: list[str] | None = None) -> None:
    """Drop the lab's boxes of earlier recipes (each is a full disk); one still in use stays."""
    for name in names:
        subprocess.run(
            [*(prefix or []), "vagrant", "box", "remove", "--provider", PROVIDER, name],
            capture_output=True, env=vagrant_env(), timeout=VAGRANT_TIMEOUT,
        )  # fmt: skip


def _vagrant(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=vagrant_env(), cwd=cwd, timeout=VAGRANT_TIMEOUT)
    if done.returncode:
        raise BoxError(f"{' '.join(argv[-4:])} failed (exit {done.returncode}):\n{for_terminal(done.stderr[-3000:])}")
    return done.stdout
