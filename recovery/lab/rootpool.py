"""The lab's root pool disk: the base image copied into a ZFS boot environment.

Lab hosts boot from ``rpool/ROOT/<name>`` as ZFS shops do, so a recovery can
switch boot environments (clone a snapshot, ``zpool set bootfs``) and nothing
of the operating system lives outside the pool's snapshots. The host kernel
cannot load ZFS, so the pool is made inside a *builder guest* booted from the
base image (it has the zfs module) with a blank disk attached; rootpool.sh
does the work over SSH. The disk is cached beside the base image under a key
of the base image and that script, and built into a temporary name and
renamed, under the image build lock, so a half-built disk is never used.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab import image as lab_image
from recovery.lab.image import ROOT_POOL_SCRIPT, ImageBuildError, ImagePaths, Progress, build_image
from recovery.lab.vm import ROOT_POOL_SERIAL, BootMode, Guest, GuestError, _overlay, _qemu_img, virtio_disk
from recovery.transport.result import TransportError
from recovery.transport.ssh import SshSession

#: Virtual size of the root pool disk; qcow2 stores only what the pool writes.
ROOT_POOL_SIZE = "4G"
BUILDER_BOOT_TIMEOUT = 300.0
#: rootpool.sh: mostly ``cp -ax`` of the root, about 85 s under TCG.
COPY_TIMEOUT = 900.0
POWEROFF_TIMEOUT = 60.0
BASE_ROOT_SERIAL = "LABROOT"


def build_lab_image(cache_dir: Path | None = None, progress: Progress = lab_image._say) -> ImagePaths:
    """The base image, the rescue image and the root pool disk, each built only if missing."""
    image = build_image(cache_dir, progress)
    ensure_root_pool(image, progress)
    return image


def ensure_root_pool(image: ImagePaths, progress: Progress) -> None:
    """Build the root pool disk unless it is cached; a second caller waits and then finds it."""
    if image.root_pool.exists():
        return
    with lab_image._locked(image.cache / "build.lock"):
        if image.root_pool.exists():
            return
        _build(image, progress)


class PoolBuilder(Guest):
    """A guest booted from the base image's ext4 root, with a blank disk for the new root pool."""

    def __init__(self, image: ImagePaths, run_dir: Path) -> None:
        super().__init__(image, run_dir, "rpool-builder")
        self.target = self.dir / "rpool.qcow2"

    def _prepare_disks(self) -> None:
        _overlay(self.image.disk, self.root_disk)
        _qemu_img("create", "-q", "-f", "qcow2", str(self.target), ROOT_POOL_SIZE)

    def disks(self, mode: BootMode) -> list[str]:
        return virtio_disk("root", self.root_disk, BASE_ROOT_SERIAL) + virtio_disk(
            "rpool", self.target, ROOT_POOL_SERIAL
        )

    def kernel_args(self, mode: BootMode) -> str:
        return f"root=/dev/disk/by-id/virtio-{BASE_ROOT_SERIAL} rw console=ttyS0 net.ifnames=0"


def _build(image: ImagePaths, progress: Progress) -> None:
    log = image.cache / f"build-{image.root_pool.stem}.log"
    log.write_text("")
    started = time.monotonic()
    run_dir = image.cache / "rpool-build"
    builder = PoolBuilder(image, run_dir)
    staged = image.root_pool.with_name(f".{image.root_pool.name}.{os.getpid()}.tmp")
    try:
        _remove_builder_files(builder)
        progress("booting the root pool builder guest…")
        builder.start()
        waited = builder.wait_for_ssh(BUILDER_BOOT_TIMEOUT)
        progress(f"builder up after {waited:.0f} s; copying the root into rpool/ROOT/debian (about 90 s)…")
        _run_script(builder, log)
        _power_off(builder)
        progress("compressing the root pool disk…")
        lab_image._run(log, ["qemu-img", "convert", "-c", "-O", "qcow2", str(builder.target), str(staged)])
        os.rename(staged, image.root_pool)
    except (GuestError, TransportError) as exc:
        raise ImageBuildError(f"root pool build failed: {exc}; log: {log}") from exc
    finally:
        builder.stop()
        staged.unlink(missing_ok=True)
        _remove_builder_files(builder)
    progress(f"root pool disk built in {time.monotonic() - started:.0f} s: {image.root_pool}")


def _run_script(builder: PoolBuilder, log: Path) -> None:
    """rootpool.sh on the builder's stdin; its output goes to the build log."""
    with SshSession(builder.ssh_target(timeout=30.0)) as session:
        result = session.run("sh -s", timeout=COPY_TIMEOUT, stdin=ROOT_POOL_SCRIPT.read_bytes())
    with open(log, "ab") as out:
        out.write(b"$ sh -s < rootpool.sh\n" + result.stdout + result.stderr)
    if not result.ok:
        raise ImageBuildError(
            f"rootpool.sh failed (exit {result.exit_code}); full log: {log}\n"
            + for_terminal(result.stderr[-2000:])
        )


def _power_off(builder: PoolBuilder) -> None:
    """A clean power off after the export, so every write reached the disk before it is copied."""
    builder.qmp("system_powerdown")
    deadline = time.monotonic() + POWEROFF_TIMEOUT
    while builder.running():
        if time.monotonic() > deadline:
            raise ImageBuildError(f"the builder guest did not power off within {POWEROFF_TIMEOUT:.0f} s")
        time.sleep(0.5)


def _remove_builder_files(builder: PoolBuilder) -> None:
    """The builder's disks are scratch: a new build starts from a fresh overlay and a blank disk."""
    for path in (builder.root_disk, builder.target):
        path.unlink(missing_ok=True)
