"""A network namespace with no way off this machine, for lab daemons that open networks of their own.

libvirt builds bridges, runs dnsmasq and adds firewall rules for the networks
vagrant-libvirt asks for. Inside a namespace made here those exist only in the
namespace: it starts with an ``unreachable`` default route (IPv4 and IPv6)
before anything else, and only ``lo`` is up, so even a network defined with a
forward mode by mistake has nowhere to send a packet.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from recovery.hostile import for_terminal

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
#: Network namespace names are file names under /run/netns; keep them short and ours.
PREFIX = "recovery-lab-"


class NetnsError(Exception):
    """The namespace could not be made, entered or removed."""


class IsolatedNetns:
    """A named network namespace created by this object, deleted by it, with nothing routed out."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{PREFIX}{secrets.token_hex(4)}"
        self.created = False

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def create(self) -> IsolatedNetns:
        """Add the namespace, the unreachable routes first, then ``lo`` up."""
        if self.path.exists():
            raise NetnsError(f"network namespace {self.name} already exists: not ours to use")
        _ip("netns", "add", self.name)
        self.created = True
        try:
            _ip("-n", self.name, "route", "add", "unreachable", "default")
            _ip("-n", self.name, "-6", "route", "add", "unreachable", "default")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except NetnsError:
            self.delete()
            raise
        return self

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside the namespace (``ip netns exec`` keeps the PID: it execs)."""
        return ["ip", "netns", "exec", self.name, *command]

    def pids(self) -> list[int]:
        """Every process in the namespace: only what this lab started ever enters it."""
        if not self.created:
            return []
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    def delete(self) -> None:
        """Remove the namespace; the kernel frees it once its last process is gone."""
        if self.created:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
            self.created = False

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the calling thread inside the namespace (sockets it opens stay there), then leave.

        ``setns`` moves only the calling thread, so the rest of the process
        (loopback servers, other threads) stays where it was.
        """
        with open(f"/proc/self/task/{threading.get_native_id()}/ns/net", "rb") as home, open(self.path, "rb") as there:
            _setns(there.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True)
    if done.returncode:
        raise NetnsError(f"ip {' '.join(args)} failed: {for_terminal(done.stderr)}")
