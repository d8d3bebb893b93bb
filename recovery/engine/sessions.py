"""One session per host for the length of a run: SSH by default, opened on first use.

While a host is in single-user mode there is no sshd; the step that booted it
attaches a console session instead, and the steps after it use that without
knowing the difference (both have ``run(cmd, timeout) -> Result``).
"""

from __future__ import annotations

import threading
from typing import Any

from recovery.config.inventory import Host, Inventory, Ssh
from recovery.transport.ssh import SshSession, SshTarget, pinned_keys_from_known_hosts


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


class SessionPool:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str) -> Any:
        with self._lock:
            if host not in self._sessions:
                self._sessions[host] = SshSession(ssh_target(self.inventory, host))
            return self._sessions[host]

    def attached(self, host: str) -> Any | None:
        """The host's open session, if any, without opening one."""
        with self._lock:
            return self._sessions.get(host)

    def attach(self, host: str, session: Any) -> None:
        """Use ``session`` (e.g. a console) for ``host`` from now on; the previous one is closed."""
        with self._lock:
            previous = self._sessions.pop(host, None)
            self._sessions[host] = session
        if previous is not None:
            previous.close()

    def detach(self, host: str) -> None:
        """Close the host's session; the next use opens SSH again."""
        with self._lock:
            session = self._sessions.pop(host, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
