"""The lab fleet under Vagrant: vagrant-libvirt on the lab's own libvirtd, provisioned like the QEMU lab.

``vagrant/Vagrantfile`` defines eu-web, us-web and people from the lab box;
this module writes the settings it reads (box name, libvirt socket, each
host's identity files), runs ``vagrant`` inside the libvirt host's network
namespace, and provisions every guest with recovery.lab.fleet_setup over SSH
with the host key the lab made before the guest booted: the same steps as
``recover lab up``, never a key learned from the network.

``vagrant ssh-config`` says where each guest answers (its address on the
isolated management network); the inventory written from it pins the lab's
own host keys instead of Vagrant's ``StrictHostKeyChecking no``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab import keys
from recovery.lab.fleet_setup import (
    FLEET,
    STAGING,
    FleetHost,
    FleetKeys,
    checked,
    provision,
    set_logins,
    www_sync_command,
)
from recovery.lab.image import ImagePaths
from recovery.lab.libvirt_host import STORAGE_POOL, LibvirtHost
from recovery.lab.netns import IsolatedNetns
from recovery.lab.vagrant_box import VAGRANT_ENV
from recovery.lab.vm import BootMode
from recovery.transport.result import Result
from recovery.transport.ssh import SshSession, SshTarget

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
SETTINGS_ENV = "RECOVERY_VAGRANT_LAB"
LAN_NETWORK = "recovery-lab-lan"
MANAGEMENT_NETWORK = "recovery-lab-mgmt"
MANAGEMENT_ADDRESS = "192.168.121.0/24"
#: libvirt domain names are this plus the host's name.
DOMAIN_PREFIX = "recovery-lab-"
GUEST_MEMORY_MB = 1024
#: One vCPU each: enough for the data-only recovery the Vagrant fleet rehearses (the QEMU lab's
#: guests have two, for the ZFS work of a rescue recovery).
GUEST_CPUS = 1
UP_TIMEOUT = 900.0
SSH_TIMEOUT = 30.0

Progress = Callable[[str], None]


class VagrantLabError(Exception):
    """A vagrant command failed; the message carries the end of its output."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SshConfig:
    """Where Vagrant says a machine answers SSH (``vagrant ssh-config``), without its trust settings."""

    host: str
    address: str
    port: int
    user: str
    identity_file: str


def parse_ssh_config(text: str) -> dict[str, SshConfig]:
    """``Host`` blocks of ``vagrant ssh-config``; StrictHostKeyChecking and the like are dropped on purpose."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1].strip().strip('"')
        if key == "host":
            current = blocks.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, value)
    return {
        name: SshConfig(name, b["hostname"], int(b.get("port", "22")), b.get("user", "root"), b["identityfile"])
        for name, b in blocks.items()
        if "hostname" in b and "identityfile" in b
    }


def machine_id(name: str, box: str) -> str:
    """A stable machine id per host and box (32 hex digits), so guests of one image differ."""
    return hashlib.sha256(f"{box}\0{name}".encode()).hexdigest()[:32]


@dataclass
class VagrantGuest:
    """A Vagrant lab host reached as root over SSH inside the lab's namespace, host key pinned."""

    name: str
    netns: IsolatedNetns
    target: SshTarget

    def run(self, command: str, timeout: float = 120.0) -> Result:
        """One command as root; the connection is opened inside the namespace (the guest lives there)."""
        with self.netns.entered(), SshSession(self.target) as session:
            return session.run(command, timeout=timeout)

    def ssh_target(self) -> SshTarget:
        return self.target

    @property
    def web_url(self) -> str:
        """The guest's web server on its management address (reached from inside the namespace)."""
        return f"http://{self.target.address}"


class VagrantLab:
    """eu-web, us-web and people under vagrant-libvirt, in ``run_dir``, on ``libvirt``."""

    def __init__(self, run_dir: Path, image: ImagePaths, libvirt: LibvirtHost, box: str,
                 driver: str = "qemu", progress: Progress = _say) -> None:  # fmt: skip
        self.run_dir = run_dir.absolute()
        self.image = image
        self.libvirt = libvirt
        self.box = box
        self.driver = driver
        self.progress = progress
        self.settings_file = self.run_dir / "lab.json"
        self.log_file = self.run_dir / "vagrant.log"
        self.keys_dir = self.run_dir / "keys"
        #: Hosts this object brought up: ``vagrant ssh-config`` fails for a machine not created.
        self.hosts_up: list[FleetHost] = []
        self._where: dict[str, SshConfig] | None = None

    # -- settings the Vagrantfile reads --------------------------------------

    def identity_dir(self, host: FleetHost) -> Path:
        return self.run_dir / "identity" / host.name

    def host_key(self, host: FleetHost) -> str:
        """The host's public key line, made by the lab before the first boot."""
        key = self.identity_dir(host) / "ssh_host_ed25519_key"
        return keys.ensure_ed25519(key, f"root@{host.name}").strip()

    def write_settings(self) -> Path:
        """Identity files per host (fw_cfg items) and lab.json for vagrant/Vagrantfile."""
        hosts = {}
        for host in FLEET:
            identity = self.identity_dir(host)
            identity.mkdir(parents=True, exist_ok=True)
            self.host_key(host)
            (identity / "hostname").write_text(host.name)
            (identity / "lan").write_text(f"{host.lan.ip}/24 {host.lan.mac}")
            hosts[host.name] = {
                "identity": str(identity),
                "lan_ip": host.lan.ip,
                "lan_mac": host.lan.mac,
                "machine_id": machine_id(host.name, self.box),
                "memory_mb": GUEST_MEMORY_MB,
                "cpus": GUEST_CPUS,
            }
        settings = {
            "box": self.box,
            "cmd_line": BootMode.NORMAL.kernel_args(),
            "lan_network": LAN_NETWORK,
            "libvirt": {
                "socket": str(self.libvirt.socket),
                "driver": self.driver,
                "storage_pool": STORAGE_POOL,
                "management_network": MANAGEMENT_NETWORK,
                "management_address": MANAGEMENT_ADDRESS,
                "domain_prefix": DOMAIN_PREFIX,
            },
            "hosts": hosts,
        }
        self.settings_file.write_text(json.dumps(settings, indent=2) + "\n")
        return self.settings_file

    # -- vagrant ---------------------------------------------------------------

    def vagrant(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        """``vagrant ARGS`` in the namespace, on the repository's Vagrantfile, state in the run dir."""
        env = {
            **VAGRANT_ENV,
            "VAGRANT_CWD": str(VAGRANT_DIR),
            "VAGRANT_DOTFILE_PATH": str(self.run_dir / ".vagrant"),
            SETTINGS_ENV: str(self.settings_file),
        }
        argv = self.libvirt.netns.argv(["env", *(f"{k}={v}" for k, v in env.items()), "vagrant", *args])
        with open(self.log_file, "ab") as log:
            log.write(f"\n$ vagrant {' '.join(args)}\n".encode())
        done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        with open(self.log_file, "ab") as log:
            log.write(done.stdout + done.stderr)
        if done.returncode:
            tail = (done.stdout + done.stderr)[-3000:]
            raise VagrantLabError(f"vagrant {' '.join(args)} failed (exit {done.returncode}):\n{for_terminal(tail)}")
        return done.stdout.decode(errors="replace")

    def up(self, hosts: tuple[FleetHost, ...] = FLEET) -> dict[str, float]:
        """``vagrant up`` the first host alone (it puts the box's disk into the storage pool), then the
        others at once, as the QEMU lab boots its guests; seconds each group took, by its hosts' names."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_settings()
        took = {}
        for group in (hosts[:1], hosts[1:]):
            if not group:
                continue
            names = [host.name for host in group]
            started = time.monotonic()
            self.vagrant("up", "--no-provision", "--parallel", *names)
            self.hosts_up.extend(group)
            self._where = None
            took[" ".join(names)] = round(time.monotonic() - started, 1)
            self.progress(f"vagrant up {' '.join(names)}: {took[' '.join(names)]} s")
        return took

    def destroy(self) -> None:
        """``vagrant destroy -f`` of the lab's own machines (only those the Vagrantfile defines)."""
        if self.settings_file.exists() and (self.run_dir / ".vagrant").exists():
            self.vagrant("destroy", "-f", *(host.name for host in FLEET), timeout=300.0)
        self.hosts_up = []
        self._where = None

    def ssh_configs(self) -> dict[str, SshConfig]:
        """Where each host this object brought up answers SSH, as Vagrant reports it.

        Asked once per ``up``: a vagrant command costs seconds of Ruby start-up,
        and the addresses hold until the machines are destroyed.
        """
        names = [host.name for host in self.hosts_up]
        if self._where is None and names:
            self._where = parse_ssh_config(self.vagrant("ssh-config", *names, timeout=120.0))
        return dict(self._where or {})

    def guests(self) -> dict[str, VagrantGuest]:
        """Every running host as a pinned SSH target at the address Vagrant reports."""
        found = self.ssh_configs()
        return {
            host.name: VagrantGuest(host.name, self.libvirt.netns, self.ssh_target(host, found[host.name]))
            for host in self.hosts_up
            if host.name in found
        }

    def ssh_target(self, host: FleetHost, where: SshConfig) -> SshTarget:
        pinned = " ".join(self.host_key(host).split()[:2])
        return SshTarget(host.name, where.address, where.port, where.user, str(self.image.operator_key),
                         (pinned,), connect_timeout=SSH_TIMEOUT)  # fmt: skip

    # -- provisioning and inventory ------------------------------------------

    def root_password_file(self, host: FleetHost) -> Path:
        return keys.ensure_password(self.run_dir / f"root-password-{host.name}")

    def provision(self) -> float:
        """Pools, datasets, accounts and jobs: recovery.lab.fleet_setup, as ``recover lab up`` does."""
        started = time.monotonic()
        guests = self.guests()
        fleet_keys = FleetKeys.ensure(self.keys_dir)
        host_keys = {host.name: self.host_key(host) for host in FLEET}

        def setup(host: FleetHost) -> None:
            provision(guests[host.name], host, fleet_keys, host_keys)
            set_logins(guests[host.name], self.root_password_file(host))

        with ThreadPoolExecutor(max_workers=len(FLEET)) as pool:
            list(pool.map(setup, FLEET))  # in parallel, as the QEMU lab does
        people = guests[STAGING.name]
        checked(people, people.run(www_sync_command(), timeout=300), "first www-sync over the LAN")
        return round(time.monotonic() - started, 1)
