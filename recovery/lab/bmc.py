"""The lab's BMC endpoint: a real OpenSSH server on 127.0.0.1 whose one key may only run BMC commands.

A recovery reaches out-of-band control the way one reaches an iDRAC or iLO
command line: SSH. In 2009 a stolen backup key gave its thief a shell; here
the BMC key's authorized_keys entry carries ``command=`` (every login runs
``recovery.lab.bmc_shell``, whatever the client asked for), ``from=`` (only
from this machine) and no forwarding, agent, X11 or terminal, and sshd
itself refuses the same things, so a stolen key does only what it is for.

sshd runs as a child of this process with its own host key (pinned by the
driver) in a temp dir; the machine records live in ``state_dir``, which the
lab fills with :meth:`LabBmc.add`.
"""

from __future__ import annotations

import getpass
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from recovery.lab import keys
from recovery.lab.bmc_machines import MachineRecord, MachineStore
from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port
from recovery.lab.vm import Guest
from recovery.oob.lab import LabBmcEndpoint

SSHD = "/usr/sbin/sshd"
#: What a BMC key may not do besides running its command.
KEY_RESTRICTIONS = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty"


def authorized_key_entry(public_key: str, state_dir: Path, python: str = sys.executable) -> str:
    """The authorized_keys line that ties ``public_key`` to the BMC shell, from this machine only."""
    command = shlex.join([python, "-m", "recovery.lab.bmc_shell", str(state_dir)]).replace('"', '\\"')
    key = " ".join(public_key.split()[:2])
    return f'command="{command}",from="{LOOPBACK}",{KEY_RESTRICTIONS} {key} recovery-lab-bmc\n'


def sshd_config(workdir: Path, port: int, user: str) -> str:
    """An sshd that takes keys only, for one user, and grants nothing but the forced command."""
    return "\n".join([
        f"Port {port}", f"ListenAddress {LOOPBACK}", f"HostKey {workdir / 'host_ed25519'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}", f"AllowUsers {user}",
        "AuthenticationMethods publickey", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin forced-commands-only", "PermitTTY no", "DisableForwarding yes", "PermitTunnel no",
        "PermitUserEnvironment no", "StrictModes no", "UsePAM no", "PidFile none", "LogLevel VERBOSE",
        "MaxSessions 16", "",
    ])  # fmt: skip


class LabBmc(LabDaemon):
    """One lab BMC: sshd on a free loopback port, the BMC shell behind it, machines in ``state_dir``."""

    name = "bmc"

    def __init__(self, state_dir: Path, client_public_key: str, user: str | None = None) -> None:
        super().__init__()
        self.machines = MachineStore(state_dir)
        self.client_public_key = client_public_key
        self.user = user or getpass.getuser()
        self.port = 0
        self.host_key = ""

    def add(self, guest: Guest) -> MachineRecord:
        """Put a lab guest under this BMC (its record is written; nothing is started)."""
        return self.machines.add(guest)

    def endpoint(self, host: str, machine: str, key_file: Path) -> LabBmcEndpoint:
        """How the ``lab`` driver reaches ``machine`` here, with this BMC's host key pinned."""
        return LabBmcEndpoint(
            host=host, address=LOOPBACK, port=self.port, username=self.user, key_file=str(key_file),
            host_key=self.host_key, machine=machine,
        )  # fmt: skip

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        self.host_key = " ".join(keys.generate_ed25519(workdir / "host_ed25519", "recovery-lab-bmc").split()[:2])
        entry = authorized_key_entry(self.client_public_key, self.machines.dir)
        (workdir / "authorized_keys").write_text(entry)
        (workdir / "sshd_config").write_text(sshd_config(workdir, self.port, self.user))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.machines.dir.mkdir(parents=True, exist_ok=True)
        return [SSHD, "-D", "-e", "-f", str(workdir / "sshd_config")]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False
