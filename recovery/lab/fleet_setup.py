"""What each lab host is: its place on the LAN, its protected datasets, and its role's setup.

The fleet re-creates the hosts of the seeds: two web servers (``eu-web``,
``us-web``) whose data lives on ZFS, and the staging host ``people`` whose
scheduled rsync pushes the web roots to them over the lab LAN. The guest-side
work is done by the shell scripts in ``files/``, run over SSH as root; every
one of them is repeatable, so ``recover lab up`` on existing disks changes
nothing on the protected datasets.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from recovery.hostile import for_terminal
from recovery.lab import keys
from recovery.lab.vm import LanAddress
from recovery.secrets import REDACTOR
from recovery.transport.result import Result

#: Where each protected dataset is mounted. The Apache configuration is the
#: real /etc/apache2: the pool is imported and mounted before apache2 starts,
#: and without the pool the image's own copy underneath is used.
#: The system itself: every lab host boots this boot environment (the pool's bootfs).
BOOT_ENVIRONMENT = "rpool/ROOT/debian"
MOUNTPOINTS = {
    BOOT_ENVIRONMENT: "/",
    "tank/www/htdocs": "/srv/www/htdocs",
    "tank/www/cgi-bin": "/srv/www/cgi-bin",
    "tank/apache": "/etc/apache2",
    "tank/home": "/home",
}
WEB_DATASETS = (BOOT_ENVIRONMENT, "tank/www/htdocs", "tank/www/cgi-bin", "tank/apache", "tank/home")
STAGING_DATASETS = (BOOT_ENVIRONMENT, "tank/home", "tank/www/htdocs", "tank/www/cgi-bin")

AUTO_SNAPSHOT = "/usr/local/sbin/auto-snapshot"
WWW_SYNC = "/usr/local/sbin/www-sync"
#: The only command the staging host's deploy key may run on a web server (its authorized_keys command=).
WWW_SYNC_RECEIVE = "/usr/local/sbin/www-sync-receive"
SETUP_TIMEOUT = 600.0


class Guest(Protocol):
    """A lab host setup talks to: a QEMU lab guest or a Vagrant lab guest, root over pinned SSH."""

    name: str

    def run(self, command: str, timeout: float = 120.0) -> Result: ...


class SetupError(Exception):
    """A guest-side setup script failed; the message carries its (sanitized) output."""


@dataclass(frozen=True)
class FleetHost:
    """One host of the lab fleet."""

    name: str
    number: int
    role: str
    datasets: tuple[str, ...]

    @property
    def lan(self) -> LanAddress:
        return LanAddress.for_host_number(self.number)

    @property
    def snapshot_command(self) -> str:
        """The auto-snapshot job's command line, the same for cron and for the commander."""
        return " ".join([AUTO_SNAPSHOT, *self.datasets])


FLEET = (
    FleetHost("eu-web", 11, "web", WEB_DATASETS),
    FleetHost("us-web", 12, "web", WEB_DATASETS),
    FleetHost("people", 13, "staging", STAGING_DATASETS),
)
WEB_HOSTS = tuple(host for host in FLEET if host.role == "web")
STAGING = next(host for host in FLEET if host.role == "staging")


def fleet_host(name: str) -> FleetHost:
    for host in FLEET:
        if host.name == name:
            return host
    raise KeyError(f"no lab host named {name!r} (the fleet: {', '.join(h.name for h in FLEET)})")


def www_sync_command() -> str:
    """people's scheduled push to every web server's LAN address."""
    return " ".join([WWW_SYNC, *(host.lan.ip for host in WEB_HOSTS)])


@dataclass(frozen=True)
class FleetKeys:
    """Key pairs the commander makes for the fleet's accounts, kept in the lab's ``keys/``."""

    webmaster: Path
    backup: Path
    deploy: Path
    intruder: Path

    @classmethod
    def ensure(cls, directory: Path) -> FleetKeys:
        made = cls(
            webmaster=directory / "webmaster_ed25519",
            backup=directory / "backup_ed25519",
            deploy=directory / "www-sync_ed25519",
            intruder=directory / "intruder_ed25519",
        )
        for name, path in vars(made).items():
            keys.ensure_ed25519(path, f"{name}@recovery-lab")
        return made


def public(key: Path) -> str:
    return key.with_name(key.name + ".pub").read_text().strip()


def script(name: str) -> str:
    return resources.files("recovery.lab").joinpath("files", name).read_text()


def run_script(guest: Guest, name: str, *args: str, timeout: float = SETUP_TIMEOUT) -> Result:
    """Run one of ``files/`` as root on the guest with ``args``; raise with its output on failure."""
    command = f"sh -c {shlex.quote(script(name))} {name} {' '.join(shlex.quote(a) for a in args)}"
    return checked(guest, guest.run(command, timeout=timeout), name)


def checked(guest: Guest, result: Result, what: str) -> Result:
    if not result.ok:
        raise SetupError(
            f"{guest.name}: {what} failed (exit {result.exit_code}):\n"
            f"{for_terminal(result.stdout + result.stderr, limit=3000)}"
        )
    return result


def install_program(guest: Guest, name: str, target: str) -> None:
    """Copy ``files/name`` to ``target`` on the guest as an executable (contents sent base64)."""
    encoded = base64.b64encode(script(name).encode()).decode()
    command = f"printf %s {encoded} | base64 -d >{target}.new && chmod 755 {target}.new && mv {target}.new {target}"
    checked(guest, guest.run(command), f"installing {target}")


def cron_line(schedule: str, command: str) -> str:
    """The cron entry a real fleet runs on ``schedule``, written commented out in the lab.

    The lab runs these jobs itself at fixed points (`recover lab history`, the
    attacks), so no test or rehearsal depends on the minute it runs at: staging's
    sync at :00/:30 put the 2009 scripts back onto restored hosts before `return`,
    and an hourly snapshot on one host but not its twin broke the kill matrix's
    comparison. That a pushing host can re-infect a restored one before traffic
    returns is a gap the recovery itself must close, not one to rehearse by chance.
    """
    return f"# run by the lab at fixed points, not by cron:\n# {schedule} root {command} >/dev/null 2>&1"


def set_logins(guest: Guest, password_file: Path) -> None:
    """Give root the password in ``password_file`` (a lab password: URL-safe characters, never shown)
    and take PAM out of sshd's logins: ``files/logins.sh`` says why (1.2-1.4 s a connection on a TCG
    guest alone with PAM, 0.6 s without; median of 8) and how the reload is waited for."""
    password = password_file.read_text().strip()
    REDACTOR.add(password)
    run_script(guest, "logins.sh", password)


def provision(guest: Guest, host: FleetHost, fleet_keys: FleetKeys, web_host_keys: dict[str, str]) -> None:
    """Pool, datasets and the role's accounts and jobs; repeatable on a provisioned guest."""
    run_script(guest, "pool.sh", *(f"{d}={MOUNTPOINTS[d]}" for d in host.datasets if d != BOOT_ENVIRONMENT))
    install_program(guest, "auto-snapshot.sh", AUTO_SNAPSHOT)
    snapshot_cron = cron_line("0 * * * *", host.snapshot_command)
    if host.role == "web":
        install_program(guest, "www-sync-receive.sh", WWW_SYNC_RECEIVE)
        deploy = f'from="{STAGING.lan.ip}",command="{WWW_SYNC_RECEIVE}",restrict {public(fleet_keys.deploy)}'
        run_script(guest, "web-host.sh", public(fleet_keys.webmaster), deploy, snapshot_cron)
        return
    install_program(guest, "www-sync.sh", WWW_SYNC)
    known_hosts = "\n".join(f"{h.lan.ip} {' '.join(web_host_keys[h.name].split()[:2])}" for h in WEB_HOSTS)
    deploy_private = base64.b64encode(fleet_keys.deploy.read_bytes()).decode()
    run_script(
        guest, "staging-host.sh", public(fleet_keys.backup), deploy_private, known_hosts,
        cron_line("*/30 * * * *", www_sync_command()), snapshot_cron,
    )  # fmt: skip
