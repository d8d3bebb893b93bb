"""Copy chosen files from a quarantined evidence snapshot back into the restored dataset.

The evidence snapshot is mounted read-only in a temporary directory (no
property of the quarantine changes), each file is copied with its mode and
times, and the snapshot is unmounted again. The same read-only mount serves
anyone who must look inside evidence without touching it.
"""

from __future__ import annotations

import shlex
from typing import Protocol

from recovery.hostile import for_terminal
from recovery.transport.result import Result


class Transport(Protocol):
    def run(self, command: str, timeout: float) -> Result: ...


class SalvageError(Exception):
    pass


def relative(path: str, mountpoint: str) -> str:
    """``path`` inside a dataset mounted at ``mountpoint``; refuses anything outside it or with '..'."""
    if not path.startswith(mountpoint.rstrip("/") + "/") or "/../" in f"{path}/":
        raise SalvageError(f"{path} is not inside {mountpoint}")
    return path[len(mountpoint.rstrip("/")) + 1:]


def with_snapshot_mounted(snapshot: str, commands: list[str]) -> str:
    """A shell script that runs ``commands`` with ``snapshot`` mounted read-only at ``$d``."""
    return "\n".join([
        "set -e",
        'd=$(mktemp -d /run/recovery-snapshot.XXXXXX)',
        f"mount -t zfs -o ro {shlex.quote(snapshot)} \"$d\"",
        'trap \'umount "$d" && rmdir "$d"\' EXIT',
        *commands,
    ])


def copy_back(transport: Transport, evidence: str, mountpoint: str, paths: list[str]) -> None:
    """Copy ``paths`` (absolute, under ``mountpoint``) from ``evidence`` to where they were."""
    copies = [f"cp -a -- \"$d\"/{shlex.quote(relative(p, mountpoint))} {shlex.quote(p)}" for p in paths]
    result = transport.run(with_snapshot_mounted(evidence, copies), timeout=600)
    if result.exit_code != 0:
        raise SalvageError(f"copy from {evidence} failed (exit {result.exit_code}): "
                           f"{for_terminal(result.stderr, 400)}")
