"""What an attack re-enactment really did: every path it changed on each host, and when.

Written on the commander side into the lab's ``ground-truth/`` directory for
tests and rehearsals, to grade what a recovery found. The recovery code never
reads it: in a real incident nobody hands you this file.

A change is described the way ``zfs diff`` would see it between the snapshot
before and the snapshot after the attack: adding or removing an entry also
modifies its directory, so the directory is listed too. Paths outside the
host's protected datasets (``dataset: null``) are in no snapshot at all.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recovery.lab.fleet_setup import MOUNTPOINTS, fleet_host

ADDED, MODIFIED, REMOVED = "added", "modified", "removed"
FILE, DIRECTORY = "file", "directory"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class PathChange:
    path: str
    change: str
    type: str
    dataset: str | None
    at: str
    what: str = ""
    mtime: str | None = None
    marker: str | None = None  # text the attack wrote into a file it modified, to look for afterwards


@dataclass
class HostTruth:
    snapshot_before: str | None = None
    snapshot_after: str | None = None
    changes: list[PathChange] = field(default_factory=list)


@dataclass
class Action:
    """Something the intruder did that changed no file (a request, a login), for the timeline."""

    host: str
    at: str
    what: str


class GroundTruth:
    """Collects an attack's changes as they happen; ``write`` saves them as JSON."""

    def __init__(self, attack: str, seed: str) -> None:
        self.attack = attack
        self.seed = seed
        self.started_at = now()
        self.hosts: dict[str, HostTruth] = {}
        self.actions: list[Action] = []

    def host(self, name: str) -> HostTruth:
        return self.hosts.setdefault(name, HostTruth())

    def changed(self, host: str, path: str, change: str, what: str, kind: str = FILE,
                mtime: str | None = None, marker: str | None = None) -> None:  # fmt: skip
        """Record one change, and the directory it modifies when an entry comes or goes."""
        at = now()
        truth = self.host(host)
        truth.changes.append(PathChange(path, change, kind, dataset_of(host, path), at, what, mtime, marker))
        if change in (ADDED, REMOVED):
            self._directory_modified(host, posixpath.dirname(path), at)

    def action(self, host: str, what: str) -> None:
        self.actions.append(Action(host, now(), what))

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromisoformat(self.started_at).strftime("%Y%m%dT%H%M%S")
        path = directory / f"{self.attack}-{stamp}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "seed": self.seed,
            "started_at": self.started_at,
            "finished_at": now(),
            "hosts": {name: asdict(truth) for name, truth in self.hosts.items()},
            "actions": [asdict(a) for a in self.actions],
        }

    def _directory_modified(self, host: str, directory: str, at: str) -> None:
        listed = {c.path for c in self.host(host).changes}
        if directory not in listed:
            self.host(host).changes.append(
                PathChange(directory, MODIFIED, DIRECTORY, dataset_of(host, directory), at, "entry added or removed")
            )


def dataset_of(host: str, path: str) -> str | None:
    """The host's protected dataset holding ``path`` (deepest mountpoint), or None for the root file system."""
    best: tuple[int, str | None] = (-1, None)
    for dataset in fleet_host(host).datasets:
        mountpoint = MOUNTPOINTS[dataset]
        inside = path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) > best[0]:
            best = (len(mountpoint), dataset)
    return best[1]
