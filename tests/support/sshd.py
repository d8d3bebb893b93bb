"""Real OpenSSH daemons on 127.0.0.1 for tests: one per test host, own host key, own client key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Sshd:
    name: str
    port: int
    dir: Path
    host_key: str  # "ssh-ed25519 BASE64"
    client_key: Path
    pid: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(5)

    def inventory_host(self, **extra: str) -> str:
        lines = [f"[hosts.{self.name}]", 'address = "127.0.0.1"', 'role = "web"',
                 *(f"{k} = {v}" for k, v in extra.items()),
                 f"[hosts.{self.name}.ssh]", f"port = {self.port}", f'key = "{self.client_key}"',
                 f'host_key = "{self.host_key}"', ""]
        return "\n".join(lines)


def start_sshd(name: str, base: Path, client_key: Path, extra_config: tuple[str, ...] = ()) -> Sshd:
    """Start sshd for one test host; root logs in with ``client_key`` only.

    ``extra_config``: more sshd_config lines (a benchmark's ``SetEnv``, say).
    """
    d = base / f"sshd-{name}"
    d.mkdir(parents=True)
    host_key = keygen(d / "host_ed25519")
    (d / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_ed25519'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        f"PidFile {d / 'sshd.pid'}", "LogLevel ERROR", "MaxSessions 50", "MaxStartups 50",
        "AllowTcpForwarding yes", "Subsystem sftp internal-sftp", *extra_config, "",
    ]))
    Path("/run/sshd").mkdir(exist_ok=True)
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    _wait_port(port, proc)
    return Sshd(name, port, d, host_key, client_key, proc.pid, proc)


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}")
