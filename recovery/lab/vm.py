"""Lab guests: QEMU virtual machines booted from the cached lab image.

Each guest's root disk is a copy-on-write overlay of the cached root pool
disk: the initramfs imports pool ``rpool`` and mounts the boot environment
its ``bootfs`` names, so a recovery switches boot environments with ``zpool
set bootfs``. A second disk holds pool ``tank``. Disks carry virtio serials
(``/dev/disk/by-id/virtio-<serial>`` in the guest), so their names do not
depend on the order they are attached in. A rescue boot (the lab BMC's
virtual media) starts the known-good rescue image instead, attached as a
snapshot so the cached file never changes, with the host's disks after it.

Networking never leaves this machine: QEMU user
networking with ``restrict=on`` and forwards bound to 127.0.0.1 (SSH, HTTP),
and optionally a second NIC on a vde switch that only the lab guests share.
The serial console and QMP are unix sockets in the guest's run directory.

Identity (hostname, LAN address, SSH host key) is handed to the guest through
QEMU fw_cfg, so the commander made the host key and can pin it from the start.
"""

from __future__ import annotations

import enum
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab import keys
from recovery.lab.image import RESCUE_ROOT, RESCUE_SERIAL, ImagePaths
from recovery.lab.ports import LOOPBACK, free_port, is_free
from recovery.lab.qmp import QmpError, qmp
from recovery.transport.result import Result, TransportError
from recovery.transport.ssh import HostKeyRefused, LoginRefused, SshSession, SshTarget

QEMU = "qemu-system-x86_64"
KERNEL_ARGS = "rw console=ttyS0 net.ifnames=0"
#: Debian's initramfs (scripts/zfs) imports pool ``rpool`` and mounts the dataset its ``bootfs``
#: names: ``zfs:AUTO`` is the one spelling that reads bootfs, and ``rpool=`` keeps it from
#: importing other pools in search of one (tank's bootfs is the host's to set, not the boot's).
ZFS_ROOT = "root=zfs:AUTO rpool=rpool"
ROOT_POOL_SERIAL = "RPOOL0"
TANK_SERIAL = "TANK0"
#: Where pool tank's disk appears in every guest, whatever else is attached.
TANK_DEVICE = f"/dev/disk/by-id/virtio-{TANK_SERIAL}"
DATA_DISK_SIZE = "512M"
#: QEMU's user-network NIC; every guest has its own slirp, so one MAC serves all.
WAN_MAC = "52:54:00:12:34:56"
LAN_PREFIX = "10.77.0"
KVM_PROBE_SECONDS = 10.0
#: Unix socket paths are limited to 108 bytes by the kernel.
SOCKET_PATH_MAX = 100
#: Console output kept while waiting for a pattern; a chatty guest cannot fill memory.
PENDING_MAX = 1024 * 1024


class GuestError(Exception):
    """A guest could not be started, reached or stopped."""


class BootMode(enum.Enum):
    """How the next boot comes up.

    Single-user boots the host's own boot environment to sulogin on the serial
    console; rescue boots the known-good rescue image, which gives root a shell
    there and leaves the host's pools alone until asked.
    """

    NORMAL = "normal"
    SINGLE_USER = "single-user"
    RESCUE = "rescue"

    def kernel_args(self) -> str:
        if self is BootMode.RESCUE:
            return f"root={RESCUE_ROOT} {KERNEL_ARGS}"
        if self is BootMode.SINGLE_USER:
            return f"{ZFS_ROOT} {KERNEL_ARGS} systemd.unit=rescue.target"
        return f"{ZFS_ROOT} {KERNEL_ARGS}"


def choose_accel(image: ImagePaths) -> str:
    """``kvm`` only if a short probe boot under KVM finishes; otherwise ``tcg``.

    /dev/kvm can exist while KVM guests hang, so its presence proves nothing.
    A hung probe costs its full timeout, so the verdict is kept in the cache
    until the host reboots. ``RECOVERY_LAB_ACCEL`` forces a choice.
    """
    forced = os.environ.get("RECOVERY_LAB_ACCEL")
    if forced:
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    record = image.cache / "kvm-probe"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    known = record.read_text().split() if record.exists() else []
    if len(known) == 2 and known[0] == boot_id:
        return known[1]
    accel = "kvm" if _kvm_boots(image.kernel) else "tcg"
    record.write_text(f"{boot_id} {accel}\n")
    return accel


def _kvm_boots(kernel: Path) -> bool:
    """Boot the kernel with no root under KVM: it panics and QEMU exits at once if KVM works."""
    command = [
        QEMU, "-accel", "kvm", "-nodefaults", "-no-user-config", "-display", "none",
        "-m", "256", "-no-reboot", "-serial", "stdio", "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = process.communicate(timeout=KVM_PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return process.returncode == 0 and b"Kernel panic" in out


@dataclass(frozen=True)
class LanAddress:
    """A guest's place on the lab LAN: its static address and the MAC that identifies the NIC."""

    ip: str
    mac: str

    @classmethod
    def for_host_number(cls, number: int) -> LanAddress:
        if not 2 <= number <= 254:
            raise ValueError(f"lab LAN host number {number} outside 2..254")
        return cls(ip=f"{LAN_PREFIX}.{number}", mac=f"52:54:00:77:00:{number:02x}")


class LanSwitch:
    """A vde switch on a unix socket: a LAN between guests that the host has no interface on."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "lan"
        self.pidfile = run_dir / "lan.pid"

    def start(self) -> None:
        if self.running():
            return
        _check_socket_path(self.dir / "ctl")
        subprocess.run(
            ["vde_switch", "-s", str(self.dir), "-d", "-p", str(self.pidfile)],
            check=True, capture_output=True,
        )  # fmt: skip

    def running(self) -> bool:
        return _pid_of(self.pidfile, must_mention=str(self.dir)) is not None

    def stop(self) -> None:
        _kill_recorded(self.pidfile, must_mention=str(self.dir), grace=2.0)


class Guest:
    """One lab host as a QEMU VM, with its disks and sockets in ``run_dir/name``."""

    def __init__(
        self,
        image: ImagePaths,
        run_dir: Path,
        name: str,
        lan: LanSwitch | None = None,
        lan_address: LanAddress | None = None,
        memory_mb: int = 1024,
        cpus: int = 2,
    ) -> None:
        if (lan is None) != (lan_address is None):
            raise ValueError("a LAN needs an address and an address needs a LAN")
        self.image = image
        self.name = name
        self.dir = run_dir / name
        self.lan = lan
        self.lan_address = lan_address
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.root_disk = self.dir / "root.qcow2"
        self.data_disk = self.dir / "tank.qcow2"
        self.host_key_file = self.dir / "ssh_host_ed25519_key"
        self.serial_socket = self.dir / "serial.sock"
        self.serial_log = self.dir / "serial.log"
        self.qmp_socket = self.dir / "qmp.sock"
        self.pidfile = self.dir / "qemu.pid"
        self.state_file = self.dir / "guest.json"
        self.ssh_port = 0
        self.http_port = 0
        self.accel = ""
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self, mode: BootMode = BootMode.NORMAL) -> None:
        """Boot the guest; disks and host key are made on first start and kept across boots."""
        if self.running():
            raise GuestError(f"{self.name} is already running")
        self._prepare()
        self.ssh_port, self.http_port = self._forwarded_ports()
        self.accel = choose_accel(self.image)
        for stale in (self.serial_socket, self.qmp_socket, self.pidfile):
            stale.unlink(missing_ok=True)
        with open(self.dir / "qemu.log", "ab") as log:
            self._process = subprocess.Popen(
                self.qemu_command(mode), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self._save_state(mode)

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return _pid_of(self.pidfile, must_mention=str(self.dir)) is not None

    def stop(self, grace: float = 5.0) -> None:
        """QMP ``quit``, then SIGKILL of the QEMU this lab started if it is still there. Once the QEMU
        this object started has exited, the guest may run in another one (the lab BMC's power cycle
        starts a new QEMU): its PID file finds it."""
        try:
            self.qmp("quit")
        except QmpError:
            pass  # QEMU already gone or its monitor is stuck: the PID decides
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return
        _kill_recorded(self.pidfile, must_mention=str(self.dir), grace=grace)

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in (self.serial_socket, self.qmp_socket):
            _check_socket_path(path)
        self._prepare_disks()
        keys.ensure_ed25519(self.host_key_file, f"root@{self.name}")
        identity = self.dir / "identity"
        identity.mkdir(exist_ok=True)
        (identity / "hostname").write_text(self.name)
        lan = identity / "lan"
        if self.lan_address:
            lan.write_text(f"{self.lan_address.ip}/24 {self.lan_address.mac}")
        else:
            lan.unlink(missing_ok=True)

    def _prepare_disks(self) -> None:
        if not self.image.root_pool.exists():
            raise GuestError(
                f"no root pool disk {self.image.root_pool}: build it with recovery.lab.rootpool.build_lab_image()"
            )
        if not self.root_disk.exists():
            _overlay(self.image.root_pool, self.root_disk)
        if not self.data_disk.exists():
            _qemu_img("create", "-q", "-f", "qcow2", str(self.data_disk), DATA_DISK_SIZE)

    def disks(self, mode: BootMode) -> list[str]:
        """The host's root pool and tank disks; a rescue boot puts the rescue media first."""
        host = virtio_disk("rpool", self.root_disk, ROOT_POOL_SERIAL) + virtio_disk("tank", self.data_disk, TANK_SERIAL)
        if mode is BootMode.RESCUE:
            return virtio_disk("rescue", self.image.rescue_disk, RESCUE_SERIAL, "snapshot=on") + host
        return host

    def kernel_args(self, mode: BootMode) -> str:
        return mode.kernel_args()

    def qemu_command(self, mode: BootMode) -> list[str]:
        """The QEMU command line for a boot in ``mode``; every network path stays on this machine."""
        forwards = f"hostfwd=tcp:{LOOPBACK}:{self.ssh_port}-:22,hostfwd=tcp:{LOOPBACK}:{self.http_port}-:80"
        command = [
            QEMU, "-name", self.name, "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", self.accel, "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", self.kernel_args(mode), *self.disks(mode),
            "-netdev", f"user,id=wan,restrict=on,{forwards}",
            "-device", f"virtio-net-pci,netdev=wan,mac={WAN_MAC}",
            "-chardev", f"socket,id=serial0,path={self.serial_socket},server=on,wait=off,"
                        f"logfile={self.serial_log},logappend=on",
            "-serial", "chardev:serial0",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-pidfile", str(self.pidfile),
        ]  # fmt: skip
        for item in ("hostname", "lan"):
            if (self.dir / "identity" / item).exists():
                command += ["-fw_cfg", f"name=opt/recovery/{item},file={self.dir / 'identity' / item}"]
        command += ["-fw_cfg", f"name=opt/recovery/ssh_host_ed25519_key,file={self.host_key_file}"]
        if self.lan and self.lan_address:
            command += [
                "-netdev", f"vde,id=lan,sock={self.lan.dir}",
                "-device", f"virtio-net-pci,netdev=lan,mac={self.lan_address.mac}",
            ]  # fmt: skip
        return command

    def _forwarded_ports(self) -> tuple[int, int]:
        """The ports of the previous boot when they are still free, so a reboot through the
        lab BMC keeps the inventory, known_hosts and HAProxy right; new ones otherwise."""
        try:
            state = json.loads(self.state_file.read_text())
            previous = (int(state["ssh_port"]), int(state["http_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return free_port(), free_port()
        return previous if all(p and is_free(p) for p in previous) else (free_port(), free_port())

    def _save_state(self, mode: BootMode) -> None:
        """Ports and mode on disk, so another process (``recover lab status``) can find the guest."""
        state = {
            "name": self.name,
            "mode": mode.value,
            "accel": self.accel,
            "ssh_port": self.ssh_port,
            "http_port": self.http_port,
            "host_key": self.host_key,
            "lan_ip": self.lan_address.ip if self.lan_address else None,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    # -- SSH -------------------------------------------------------------

    @property
    def host_key(self) -> str:
        """The guest's public host key line (``ssh-ed25519 AAAA... root@name``), known before boot."""
        return self.host_key_file.with_name(self.host_key_file.name + ".pub").read_text().strip()

    def ssh_target(self, timeout: float = 10.0) -> SshTarget:
        """Root on the guest's forwarded SSH port, accepting only the guest's own host key."""
        pinned = " ".join(self.host_key.split()[:2])
        return SshTarget(self.name, LOOPBACK, self.ssh_port, "root", str(self.image.operator_key),
                         (pinned,), connect_timeout=timeout)

    @property
    def web_url(self) -> str:
        """The guest's web server, through its forwarded HTTP port."""
        return f"http://{LOOPBACK}:{self.http_port}"

    def wait_for_ssh(self, timeout: float = 180.0) -> float:
        """Block until SSH with the pinned key answers; return seconds waited."""
        started = time.monotonic()
        last_error: Exception | None = None
        while time.monotonic() - started < timeout:
            if not self.running():
                raise GuestError(f"{self.name}: QEMU exited while booting\n{self.diagnostics()}")
            if not _ssh_banner(self.ssh_port):
                time.sleep(1.0)
                continue
            try:
                SshSession(self.ssh_target(timeout=5.0)).open().close()
                return time.monotonic() - started
            except (HostKeyRefused, LoginRefused):
                raise  # sshd answered and the keys do not match: waiting will not help
            except TransportError as exc:
                last_error = exc
                time.sleep(1.0)
        raise GuestError(
            f"{self.name}: no SSH within {timeout:.0f} s ({last_error!r})\n{self.diagnostics()}"
        )

    def run(self, command: str, timeout: float = 120.0) -> Result:
        """Run one command as root over SSH; output stays bytes (the guest may be hostile)."""
        with SshSession(self.ssh_target()) as session:
            return session.run(command, timeout=timeout)

    # -- console and QMP -------------------------------------------------

    def console(self, timeout: float = 10.0) -> SerialConsole:
        """Attach to the serial line (one owner at a time)."""
        return SerialConsole(self.serial_socket, timeout)

    def qmp(self, command: str, **arguments: object) -> object:
        """One QMP command on the guest's monitor socket; returns its ``return`` value."""
        return qmp(self.qmp_socket, command, **arguments)

    def diagnostics(self, lines: int = 20) -> str:
        """The tails of QEMU's log and the serial console, made safe to print."""
        parts = []
        for path in (self.dir / "qemu.log", self.serial_log):
            if path.exists():
                tail = b"\n".join(path.read_bytes().splitlines()[-lines:])
                parts.append(f"--- {path}\n{for_terminal(tail, limit=4000)}")
        return "\n".join(parts)


class SerialConsole:
    """The guest's serial line: wait for text, send lines. Bytes from the guest stay bytes."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._pending = b""

    def expect(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        """Read until ``pattern`` (a regex) shows up in what arrived after the previous match."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self._pending)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestError(
                    f"console: {pattern!r} not seen within {timeout:.0f} s; last output:\n"
                    + for_terminal(self._pending[-1500:])
                )
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestError("console closed")
            self._pending = (self._pending + chunk)[-PENDING_MAX:]
        self._pending = self._pending[match.end():]
        return match

    def send_line(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


def _ssh_banner(port: int) -> bool:
    """Whether sshd itself answers; QEMU accepts on a forward long before the guest listens."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2.0) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def virtio_disk(name: str, path: Path, serial: str, *options: str) -> list[str]:
    """A qcow2 disk the guest sees as /dev/disk/by-id/virtio-<serial>."""
    drive = ",".join((f"if=none,id={name},file={path},format=qcow2", *options))
    return ["-drive", drive, "-device", f"virtio-blk-pci,drive={name},serial={serial}"]


def _overlay(backing: Path, overlay: Path) -> None:
    _qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing), str(overlay))


def _qemu_img(*args: str) -> None:
    done = subprocess.run(["qemu-img", *args], capture_output=True)
    if done.returncode:
        raise GuestError(f"qemu-img {args[0]} failed: {for_terminal(done.stderr)}")


def _check_socket_path(path: Path) -> None:
    if len(str(path)) > SOCKET_PATH_MAX:
        raise GuestError(f"socket path too long for a unix socket ({len(str(path))} bytes): {path}")


def _pid_of(pidfile: Path, must_mention: str) -> int | None:
    """The recorded PID if that process is alive and is ours (its command line names our run dir)."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if must_mention.encode() in cmdline else None


def _kill_recorded(pidfile: Path, must_mention: str, grace: float) -> None:
    """SIGTERM, then SIGKILL, the one process a pidfile names, only if it is the one we started."""
    pid = _pid_of(pidfile, must_mention)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _pid_of(pidfile, must_mention) is None:
            return
        time.sleep(0.1)
    if _pid_of(pidfile, must_mention) is not None:
        os.kill(pid, signal.SIGKILL)
