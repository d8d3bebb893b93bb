"""One SSH session per host for the length of a run, opened on first use."""

from __future__ import annotations

import threading

from recovery.config.inventory import Host, Inventory
from recovery.transport.ssh import SshSession, SshTarget, pinned_keys_from_known_hosts


def ssh_target(inventory: Inventory, name: str) -> SshTarget:
    host: Host = inventory.hosts[name]
    ssh = host.ssh
    if ssh.host_key is not None:
        pins: tuple[str, ...] = (ssh.host_key,)
    else:
        assert ssh.known_hosts is not None  # the model requires one of the two
        pins = pinned_keys_from_known_hosts(ssh.known_hosts, host.address, ssh.port)
    gateway = ssh_target(inventory, ssh.gateway) if ssh.gateway else None
    return SshTarget(name, host.address, ssh.port, ssh.user, ssh.key, pins, gateway)


class SessionPool:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._sessions: dict[str, SshSession] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str) -> SshSession:
        with self._lock:
            if host not in self._sessions:
                self._sessions[host] = SshSession(ssh_target(self.inventory, host))
            return self._sessions[host]

    def close(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
