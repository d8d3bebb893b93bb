"""How the run reaches each host: one access object per host, its channel a journaled fact.

A host is reached over SSH while its own system runs, over the serial console
while it is in single-user mode (no sshd), or over the console of the rescue
system. Which one is true is a fact about the host, not about this process:
it is journaled (``channel_changed``) when a step moves the host to another
channel, and a resumed run reopens the channel the journal names, so a kill
while the host sits in single-user mode does not make `resume` knock on an
sshd that is not there.

Out-of-band drivers are opened once per host per run and closed at its end:
BMCs allow few sessions, and some drop the oldest when a new one logs in.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from recovery import secrets
from recovery.config.inventory import Host, Inventory, IpmiOob, LibvirtOob, RedfishOob, Ssh
from recovery.engine.journal import Journal, Record
from recovery.errors import Fault
from recovery.oob.base import OobDriver
from recovery.oob.ipmi import IpmiDriver
from recovery.oob.ipmi_endpoint import IpmiEndpoint
from recovery.oob.lab import LabBmcEndpoint, LabDriver
from recovery.oob.libvirt import LibvirtDriver, LibvirtEndpoint
from recovery.oob.redfish import RedfishDriver, RedfishEndpoint
from recovery.transport.console import LOGIN_TIMEOUT, ConsoleSession
from recovery.transport.result import Result
from recovery.transport.ssh import SshSession, SshTarget, pinned_keys_from_known_hosts


class Channel(str, enum.Enum):
    """Which door a host is reached through."""

    SSH = "ssh"  # the host's own system, multi-user
    CONSOLE = "console"  # the host's own system in single-user mode, on the serial console
    RESCUE = "rescue"  # a known-good rescue system, on the serial console


class Session(Protocol):
    """What every channel offers the steps: commands and files, nothing else."""

    def open(self) -> object: ...

    def run(self, command: str, timeout: float = 300.0) -> Result: ...

    def put(self, local: str, remote: str) -> None: ...

    def get(self, remote: str, local: str, max_bytes: int) -> int: ...

    def fetch(self, command: str, local: str, max_bytes: int, timeout: float = 300.0, large: bool = False) -> int:
        """``large``: hundreds of MB are expected (a full ``zfs send``), worth a connection of their own."""

    def close(self) -> None: ...


class AccessError(Fault):
    """The inventory gives no way to reach the host the way a step needs (never retried)."""


def ssh_pins(ssh: Ssh, address: str) -> tuple[str, ...]:
    """The host keys an `ssh` table pins, given inline or in a known_hosts file."""
    if ssh.host_key is not None:
        return (ssh.host_key,)
    assert ssh.known_hosts is not None  # the model requires one of the two
    return pinned_keys_from_known_hosts(ssh.known_hosts, address, ssh.port)


def ssh_target(inventory: Inventory, name: str) -> SshTarget:
    host: Host = inventory.hosts[name]
    ssh = host.ssh
    gateway = ssh_target(inventory, ssh.gateway) if ssh.gateway else None
    return SshTarget(name, host.address, ssh.port, ssh.user, ssh.key, ssh_pins(ssh, host.address), gateway)


def oob_driver(inventory: Inventory, name: str) -> OobDriver:
    """The BMC driver of ``name`` from its inventory `oob` block (secrets resolved now, late)."""
    oob = inventory.hosts[name].oob
    if oob is None:
        raise AccessError(f"{name}: no out-of-band block in the inventory (hosts.{name}.oob)")
    where = f"hosts.{name}.oob"
    if isinstance(oob, IpmiOob):
        return IpmiDriver(IpmiEndpoint(host=name, address=oob.address, port=oob.port, username=oob.username,
                                       password=secrets.resolve(oob.password, f"{where}.password"),
                                       rescue_device=oob.rescue or "network"))
    if isinstance(oob, RedfishOob):
        url = urlsplit(oob.url)
        return RedfishDriver(RedfishEndpoint(
            host=name, address=url.hostname or "", port=url.port or (443 if url.scheme == "https" else 80),
            scheme=url.scheme, username=oob.username, password=secrets.resolve(oob.password, f"{where}.password"),
            verify=oob.verify_tls, system_id=oob.system, rescue_image=oob.rescue_image))
    if isinstance(oob, LibvirtOob):
        return LibvirtDriver(LibvirtEndpoint(host=name, address=oob.uri, domain=oob.domain))
    pins = ssh_pins(oob.ssh, oob.address)
    if not pins:
        raise AccessError(f"{name}: no pinned host key for the lab BMC at {oob.address}:{oob.ssh.port} "
                          f"({where}.ssh.host_key or {where}.ssh.known_hosts)")
    return LabDriver(LabBmcEndpoint(host=name, address=oob.address, port=oob.ssh.port, username=oob.ssh.user,
                                    key_file=oob.ssh.key, host_key=pins[0], machine=oob.machine))


def journaled_channels(records: list[Record]) -> dict[str, Channel]:
    """The channel each host was last moved to, as the journal says."""
    channels: dict[str, Channel] = {}
    for rec in records:
        if rec.event == "channel_changed" and rec.host:
            channels[rec.host] = Channel(rec.data["channel"])
    return channels


class HostAccess:
    """The one way this run reaches one host: its channel, its open session, its BMC driver."""

    def __init__(self, name: str, inventory: Inventory, journal: Journal | None, channel: Channel,
                 driver: Callable[[], OobDriver]) -> None:
        self.name = name
        self._inventory = inventory
        self._journal = journal
        self._channel = channel
        self._driver = driver
        self._session: Session | None = None
        self._lock = threading.RLock()

    @property
    def channel(self) -> Channel:
        return self._channel

    def driver(self) -> OobDriver:
        return self._driver()

    def session(self) -> Session:
        """The open session on the host's current channel, opened (or reopened) on first use."""
        with self._lock:
            if self._session is None:
                self._session = self._open(self._channel)
            return self._session

    def move(self, channel: Channel, session: Session | None = None) -> None:
        """The host is now reached through ``channel`` (journaled first); ``session`` if already open."""
        with self._lock:
            self._close_session()
            if self._journal is not None and channel is not self._channel:
                self._journal.append("channel_changed", None, self.name, channel=channel.value)
            self._channel, self._session = channel, session

    def reset(self) -> None:
        """Drop the session (a failed attempt may leave a dead one); the channel stays as it is."""
        with self._lock:
            self._close_session()

    def console(self, login_timeout: float = LOGIN_TIMEOUT, rescue: bool = False) -> ConsoleSession:
        """A session on the serial console (not yet logged in), with the host's own console credential.

        The rescue system logs root in by itself: no credential of the host is
        ever typed there, so a password prompt ends the login instead (the host
        did not boot the rescue image, or something imitates it).
        """
        ref = None if rescue else self._inventory.hosts[self.name].root_password
        password = secrets.resolve(ref, f"hosts.{self.name}.root_password") if ref else None
        return ConsoleSession(self.driver().console(), password, name=f"{self.name} console",
                              login_timeout=login_timeout)

    def close(self) -> None:
        with self._lock:
            self._close_session()

    def _open(self, channel: Channel) -> Session:
        if channel is Channel.SSH:
            return SshSession(ssh_target(self._inventory, self.name))
        session = self.console(rescue=channel is Channel.RESCUE)
        session.open()
        return session

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()


class Access:
    """Every host's access for one run; closes all sessions and drivers at the end."""

    def __init__(self, inventory: Inventory, journal: Journal | None = None) -> None:
        self.inventory = inventory
        self._journal = journal
        self._channels = journaled_channels(journal.records()) if journal else {}
        self._hosts: dict[str, HostAccess] = {}
        self._drivers: dict[str, OobDriver] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str) -> HostAccess:
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = HostAccess(host, self.inventory, self._journal,
                                               self._channels.get(host, Channel.SSH),
                                               lambda: self._driver(host))
            return self._hosts[host]

    def _driver(self, host: str) -> OobDriver:
        with self._lock:
            if host not in self._drivers:
                self._drivers[host] = oob_driver(self.inventory, host)
            return self._drivers[host]

    def close(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
            drivers, self._drivers = list(self._drivers.values()), {}
        for access in hosts:
            access.close()
        for driver in drivers:
            driver.close()

