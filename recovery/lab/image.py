"""The lab base image: Debian bookworm with real OpenZFS, built once and cached.

The host kernel cannot load ZFS, so the lab runs OpenZFS inside QEMU guests.
Every guest boots from a copy-on-write overlay of one base image, so the image
is built once (about six minutes, most of it the zfs-dkms build) and cached
outside the repository under a key derived from its recipe: change the recipe
and a new image is built; keep it and the cached one is reused.

The same build also cuts the rescue image from the provisioned root: the
known-good system the lab BMC boots from read-only media. Its sha256 is
recorded beside it, so the BMC can refuse a rescue disk that changed.

Building needs root (debootstrap, chroot, mounts) and the host's Debian mirror.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recovery.lab import keys

SUITE = "bookworm"
COMPONENTS = "main,contrib"
#: Packages debootstrap puts in the minimal root; provision.sh installs the rest.
BOOTSTRAP_PACKAGES = ("systemd-sysv", "udev", "kmod", "e2fsprogs", "openssh-client")
#: Virtual size of the root disk; the ext4 image is sparse and qcow2 stores only used blocks.
ROOT_DISK_SIZE = "4G"
ROOT_LABEL = "lab-root"
RESCUE_LABEL = "lab-rescue"
#: The rescue disk's virtio serial: set by the BMC's QEMU, so a host's own disk cannot pose as it.
RESCUE_SERIAL = "RESCUE"
RESCUE_ROOT = f"/dev/disk/by-id/virtio-{RESCUE_SERIAL}"
#: Bump when the build procedure changes in a way the other inputs do not show.
RECIPE_VERSION = "1"

PROVISION_SCRIPT = Path(__file__).with_name("provision.sh")
RESCUE_SCRIPT = Path(__file__).with_name("rescue.sh")
#: The root pool disk's recipe, run in a builder guest by recovery.lab.rootpool.
ROOT_POOL_SCRIPT = Path(__file__).with_name("rootpool.sh")
OPERATOR_KEY_NAME = "operator_ed25519"
ROOT_PASSWORD_NAME = "root-password"

Progress = Callable[[str], None]


class ImageBuildError(Exception):
    """The base image could not be built; the message names the full log."""


class RescueImageRefused(Exception):
    """The rescue disk is not the one the build recorded: booting it would trust unknown media."""


@dataclass(frozen=True)
class ImagePaths:
    """Everything a guest needs from the cached base image."""

    key: str
    cache: Path
    disk: Path
    kernel: Path
    initrd: Path
    operator_key: Path
    root_password_file: Path
    log: Path
    rescue_disk: Path
    #: ``sha256sum`` line of the rescue disk, written when it was built.
    rescue_sha256: Path
    #: Root pool with the boot environment; built after the base image (recovery.lab.rootpool).
    root_pool: Path


def default_cache_dir() -> Path:
    """``$RECOVERY_LAB_CACHE`` or the user's cache directory: big, rebuildable, never in the repo."""
    env = os.environ.get("RECOVERY_LAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recovery-lab"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_image(cache_dir: Path | None = None, progress: Progress = _say) -> ImagePaths:
    """Return the cached base image for the current recipe, building it first if needed."""
    cache = (cache_dir or default_cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    operator_key = cache / OPERATOR_KEY_NAME
    keys.ensure_ed25519(operator_key, "recovery-lab-operator")
    password = keys.ensure_password(cache / ROOT_PASSWORD_NAME)
    key = recipe_key(operator_key, password)
    final = cache / "images" / key
    paths = ImagePaths(
        key=key,
        cache=cache,
        disk=final / "base.qcow2",
        kernel=final / "vmlinuz",
        initrd=final / "initrd.img",
        operator_key=operator_key,
        root_password_file=password,
        log=cache / f"build-{key}.log",
        rescue_disk=final / "rescue.qcow2",
        rescue_sha256=final / "rescue.qcow2.sha256",
        root_pool=final / f"rpool-{root_pool_key(key)}.qcow2",
    )
    if final.is_dir():  # cached: never wait behind another recipe's build
        progress(f"base image {key} cached in {final}")
        return paths
    with _locked(cache / "build.lock"):
        if final.is_dir():
            progress(f"base image {key} cached in {final}")
            return paths
        _build(paths, progress)
    return paths


def recipe_key(operator_key: Path, password: Path) -> str:
    """Hash of everything that shapes the image; the cache is keyed by it.

    The operator's public key and root password are baked in, so they are part
    of the recipe: a new key pair must not meet an image that refuses it.
    """
    h = hashlib.sha256()
    for part in (
        RECIPE_VERSION,
        SUITE,
        COMPONENTS,
        ",".join(BOOTSTRAP_PACKAGES),
        ROOT_DISK_SIZE,
        ROOT_LABEL,
        RESCUE_LABEL,
        RESCUE_ROOT,
    ):
        h.update(part.encode() + b"\0")
    h.update(PROVISION_SCRIPT.read_bytes() + b"\0")
    h.update(RESCUE_SCRIPT.read_bytes() + b"\0")
    h.update(operator_key.with_name(operator_key.name + ".pub").read_bytes() + b"\0")
    h.update(password.read_bytes())
    return h.hexdigest()[:16]


def root_pool_key(base_key: str) -> str:
    """The root pool disk is rebuilt when its script or the base image it is copied from changes."""
    h = hashlib.sha256(base_key.encode() + b"\0" + ROOT_POOL_SCRIPT.read_bytes())
    return h.hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per cache at a time; a second caller waits and then finds it cached."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(paths: ImagePaths, progress: Progress) -> None:
    """Build into a temporary directory and rename it into place, so a half build is never cached."""
    final = paths.disk.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{paths.key}-", dir=final.parent))
    rootfs = work / "rootfs"
    started = time.monotonic()
    paths.log.write_text("")
    try:
        mirror = host_mirror()
        progress(f"debootstrap {SUITE} from {mirror} (about 1 min)…")
        _run(paths.log, _debootstrap_command(mirror, rootfs))
        progress("installing kernel and zfs-dkms (about 5 min)…")
        _provision(rootfs, paths)
        progress("packing the root filesystem into a qcow2 disk…")
        _copy_boot_files(rootfs, work)
        _pack(rootfs, work / "base.qcow2", paths.log, ROOT_LABEL)
        progress("cutting the rescue image from the same root…")
        _make_rescue(rootfs, paths)
        _pack(rootfs, work / "rescue.qcow2", paths.log, RESCUE_LABEL)
        record_sha256(work / "rescue.qcow2")
        _remove_tree(rootfs)
        os.rename(work, final)
    except BaseException:
        _remove_tree(work)
        raise
    progress(f"base image {paths.key} built in {time.monotonic() - started:.0f} s: {final}")


def host_mirror(etc: Path = Path("/etc")) -> str:
    """The Debian mirror the host itself uses, so a local mirror or proxy is honoured."""
    for uri in _deb822_uris(etc / "apt/sources.list.d") + _one_line_uris(etc / "apt/sources.list"):
        return uri
    raise ImageBuildError(
        f"no Debian mirror for {SUITE} found in {etc}/apt/sources.list.d/*.sources "
        f"or {etc}/apt/sources.list"
    )


def _deb822_uris(directory: Path) -> list[str]:
    uris = []
    for path in sorted(directory.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {
                m.group(1).lower(): m.group(2).split()
                for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M)
            }
            enabled = fields.get("enabled", ["yes"]) != ["no"]
            if enabled and "deb" in fields.get("types", []) and SUITE in fields.get("suites", []):
                uris.extend(fields.get("uris", []))
    return uris


def _one_line_uris(path: Path) -> list[str]:
    if not path.exists():
        return []
    uris = []
    for line in path.read_text().splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            uris.append(words[1])
    return uris


def _debootstrap_command(mirror: str, rootfs: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--components={COMPONENTS}",
        f"--include={','.join(BOOTSTRAP_PACKAGES)}",
        SUITE,
        str(rootfs),
        mirror,
    ]


def _provision(rootfs: Path, paths: ImagePaths) -> None:
    """Run provision.sh in the chroot with daemons kept from starting there."""
    inbox = rootfs / "tmp/recovery-provision"
    inbox.mkdir(parents=True)
    shutil.copy(PROVISION_SCRIPT, inbox / "provision.sh")
    shutil.copy(paths.root_password_file, inbox / "root-password")
    shutil.copy(paths.operator_key.with_name(paths.operator_key.name + ".pub"), inbox / "operator.pub")
    (rootfs / "etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n")
    (rootfs / "etc/hostname").write_text("lab\n")
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# image build: start no daemons in the chroot\nexit 101\n")
    policy.chmod(0o755)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C",
        "HOME": "/root",
        "RECOVERY_ROOT_PASSWORD_FILE": "/tmp/recovery-provision/root-password",
        "RECOVERY_AUTHORIZED_KEYS": "/tmp/recovery-provision/operator.pub",
    }
    command = ["chroot", str(rootfs), "/bin/sh", "/tmp/recovery-provision/provision.sh", "--bare-image"]
    with _chroot_mounts(rootfs, paths.log):
        _run(paths.log, command, env=env)
    shutil.rmtree(inbox)
    policy.unlink()


def _make_rescue(rootfs: Path, paths: ImagePaths) -> None:
    """Run rescue.sh in the chroot of the provisioned root (already packed as the base disk)."""
    shutil.copy(RESCUE_SCRIPT, rootfs / "tmp/recovery-rescue.sh")
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C",
        "RECOVERY_RESCUE_KEY": paths.key,
        "RECOVERY_RESCUE_ROOT": RESCUE_ROOT,
    }
    with _chroot_mounts(rootfs, paths.log):
        _run(paths.log, ["chroot", str(rootfs), "/bin/sh", "/tmp/recovery-rescue.sh"], env=env)
    (rootfs / "tmp/recovery-rescue.sh").unlink()


def record_sha256(disk: Path) -> None:
    """``sha256sum`` format beside the disk: what the BMC checks before every rescue boot."""
    disk.with_name(disk.name + ".sha256").write_text(f"{_sha256(disk)}  {disk.name}\n")


def check_rescue(disk: Path, record: Path) -> None:
    """Refuse a rescue disk whose sha256 is not the recorded one (or has no record)."""
    try:
        recorded = record.read_text().split()[0]
    except (OSError, IndexError):
        raise RescueImageRefused(f"no sha256 recorded for the rescue image ({record})") from None
    if not disk.is_file():
        raise RescueImageRefused(f"the rescue image {disk} is missing")
    actual = _sha256(disk)
    if actual != recorded:
        raise RescueImageRefused(
            f"the rescue image {disk} has sha256 {actual[:16]}…, the build recorded {recorded[:16]}…: "
            "it changed since it was built"
        )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def _chroot_mounts(rootfs: Path, log: Path) -> Iterator[None]:
    """/proc, /sys and /dev inside the chroot for apt and dkms, always unmounted afterwards."""
    mounts = [
        (["-t", "proc", "proc"], "proc"),
        (["-t", "sysfs", "sysfs"], "sys"),
        (["--bind", "/dev"], "dev"),
        (["--bind", "/dev/pts"], "dev/pts"),
    ]
    try:
        for args, target in mounts:
            _run(log, ["mount", *args, str(rootfs / target)])
        yield
    finally:
        _unmount_below(rootfs)


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p.startswith(prefix)]


def _unmount_below(root: Path) -> None:
    for point in reversed(_mounts_below(root)):
        if subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_tree(path: Path) -> None:
    """Delete a build directory, but never through a mount that is still there (e.g. /dev)."""
    if not path.exists():
        return
    _unmount_below(path)
    if _mounts_below(path):
        raise ImageBuildError(f"{path} still has mounts below it; not removing it")
    shutil.rmtree(path)


def _copy_boot_files(rootfs: Path, work: Path) -> None:
    """Kernel and initrd go beside the disk: guests boot with -kernel/-initrd, no bootloader."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"), key=lambda p: _version_key(p.name))
    if not kernels:
        raise ImageBuildError(f"no kernel in {rootfs / 'boot'}")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    shutil.copy(kernels[-1], work / "vmlinuz")
    shutil.copy(rootfs / "boot" / f"initrd.img-{version}", work / "initrd.img")


def _version_key(name: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", name)]


def _pack(rootfs: Path, disk: Path, log: Path, label: str) -> None:
    """An ext4 image made from the directory (no loop mount needed), stored as qcow2."""
    raw = disk.with_suffix(".raw")
    _run(log, ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(rootfs), str(raw), ROOT_DISK_SIZE])
    _run(log, ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)])
    raw.unlink()


def _run(log: Path, command: list[str], env: dict[str, str] | None = None) -> None:
    """Run one build step with its output appended to the log; fail with the log's tail."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if done.returncode:
        raise ImageBuildError(
            f"{command[0]} failed (exit {done.returncode}); full log: {log}\n" + _tail(log)
        )


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("  " + line for line in text)
