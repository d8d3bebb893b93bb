"""Bulk streams off a host through the system's OpenSSH client, trusting only the pinned host keys.

Why a second client: Paramiko decrypts and checks every packet in Python. Beside
a busy emulated guest it took a 100 MB stream at 7.1 MB/s where OpenSSH's ``ssh``
took 11.7 MB/s (``bench/ssh_fetch.py``), and a boot environment's stream is
hundreds of MB. Commands, replies and small streams (an evidence increment)
stay on the Paramiko session (:mod:`recovery.transport.ssh`): ``ssh``'s own
login costs a slow host a second or more, which only a large stream repays.

Nothing of the operator's SSH setup is used: no config file (``-F /dev/null``),
no agent, no known_hosts but one written for this copy with the pinned keys
(``StrictHostKeyChecking=yes``: another key is refused, never learnt), only the
inventory's key file, no forwarding, no connection sharing.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import tempfile
from pathlib import Path

from recovery.hostile import CappedBuffer, for_terminal
from recovery.transport.files import CHUNK, CopyTooLarge, private_file
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused, LoginRefused, SshTarget

SSH = "ssh"
#: What ``ssh`` exits with when it, not the remote command, failed.
SSH_FAILED = 255
#: How much of ``ssh``'s own error output is kept for the message.
STDERR_CAP = 64 * 1024


def usable_for(target: SshTarget) -> bool:
    """Whether ``ssh`` can take this target's streams: installed, and no gateway (a jump host's key
    would be checked against the operator's known_hosts, not the pin)."""
    return target.gateway is None and shutil.which(SSH) is not None


def known_hosts_line(address: str, port: int, key: str) -> str:
    """A known_hosts entry for a pinned ``TYPE BASE64`` key (``[address]:port`` off port 22)."""
    name = address if port == 22 else f"[{address}]:{port}"
    kind, blob = key.split()[:2]
    return f"{name} {kind} {blob}\n"


#: A pinned RSA key is offered with SHA-2 signatures: OpenSSH no longer accepts ``ssh-rsa`` (SHA-1) by default.
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256")


def signed_with(key: str) -> tuple[str, ...]:
    """The host key algorithms that can present a pinned ``TYPE BASE64`` key."""
    kind = key.split()[0]
    return RSA_ALGORITHMS if kind == "ssh-rsa" else (kind,)


def ssh_command(target: SshTarget, known_hosts: str, command: str) -> list[str]:
    """``ssh`` running ``command`` on the target, with the options that keep the operator's setup out."""
    options = {
        "BatchMode": "yes", "IdentitiesOnly": "yes", "IdentityAgent": "none", "ControlMaster": "no",
        "ControlPath": "none", "StrictHostKeyChecking": "yes", "UserKnownHostsFile": known_hosts,
        "GlobalKnownHostsFile": "/dev/null", "CheckHostIP": "no", "UpdateHostKeys": "no",
        "HostKeyAlgorithms": ",".join(algorithm for key in target.host_keys for algorithm in signed_with(key)),
        "ConnectTimeout": str(max(1, round(target.connect_timeout))),
        "LogLevel": "INFO",  # what a failed negotiation says comes at this level; stderr is only ever shown made safe
    }
    argv = [SSH, "-F", "/dev/null", "-T", "-x", "-a", "-p", str(target.port), "-l", target.user,
            "-i", str(Path(target.key_file).expanduser())]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    return [*argv, "--", target.address, command]


def fetch(target: SshTarget, command: str, local: str, max_bytes: int, timeout: float) -> int:
    """The standard output of ``command`` streamed into a new private file ``local``, at most
    ``max_bytes``; ``timeout`` is how long the stream may stall. As ``SshSession.fetch``."""
    what = f"{target.name}: {for_terminal(command, 120)}"
    if not target.host_keys:
        raise HostKeyRefused(f"{target.name}: no host key pinned; nothing was copied")
    with tempfile.TemporaryDirectory(prefix="recovery-ssh-") as scratch:
        known_hosts = os.path.join(scratch, "known_hosts")
        with private_file(known_hosts) as handle:
            handle.write("".join(known_hosts_line(target.address, target.port, key)
                                 for key in target.host_keys).encode())
        process = subprocess.Popen(ssh_command(target, known_hosts, command), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            copied, errors = _pump(process, local, max_bytes, timeout, what)
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(f"{what}: ssh did not end after its stream did") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if code == SSH_FAILED:
        raise _ssh_failure(target, what, errors)
    if code != 0:
        raise TransportError(f"{what}: exit {code}: {for_terminal(errors, 300)}", transient=False)
    return copied


def _pump(process: subprocess.Popen[bytes], local: str, max_bytes: int, timeout: float,
          what: str) -> tuple[int, bytes]:
    """Copy ``process``'s stdout into ``local`` and keep the head of its stderr, until both end."""
    assert process.stdout is not None and process.stderr is not None
    errors = CappedBuffer(STDERR_CAP)
    copied = 0
    with selectors.DefaultSelector() as selector, private_file(local) as sink:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            ready = selector.select(timeout)
            if not ready:
                raise TransportError(f"{what}: the stream broke off: nothing for {timeout:g} s")
            for key, _ in ready:
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is process.stderr:
                    errors.write(chunk)
                else:
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise CopyTooLarge(f"{what}: larger than the {max_bytes} bytes expected; copy stopped")
                    sink.write(chunk)
    return copied, errors.getvalue()


def _ssh_failure(target: SshTarget, what: str, errors: bytes) -> TransportError:
    said = for_terminal(errors.strip() or b"ssh failed without a word", 300)
    if b"Host key verification failed" in errors or b"IDENTIFICATION HAS CHANGED" in errors:
        return HostKeyRefused(f"{target.name}: host key refused: the host did not offer the key pinned in the "
                              f"inventory; nothing was copied ({said})")
    if b"Permission denied" in errors:
        return LoginRefused(f"{target.name}: SSH login as {target.user} refused: {said}")
    return TransportError(f"{what}: ssh failed: {said}")
