"""The machines a lab BMC powers: one JSON record per lab guest, with its one-time boot mode.

Whoever starts the lab writes a record for each guest (its directory and
everything needed to build its :class:`Guest` again); the BMC's shell runs as
a fresh process for every SSH command and rebuilds the Guest from it. The
guest's own ``guest.json`` and pidfile say whether it runs and on which
ports. ``next_boot`` is the one-time boot setting: the next power on or cycle
uses it and puts it back to normal, as a BMC's boot-once flag does.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recovery.lab.image import ImagePaths
from recovery.lab.vm import Guest, LanAddress, LanSwitch

MACHINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")
NORMAL = "normal"


class UnknownMachine(LookupError):
    """No record for this machine name in the BMC's state directory."""


@dataclass(frozen=True)
class MachineRecord:
    """How to rebuild one lab guest, and what its next boot should be."""

    name: str
    run_dir: str
    image: dict[str, str]
    memory_mb: int
    cpus: int
    lan_run_dir: str | None = None
    lan_ip: str | None = None
    lan_mac: str | None = None
    next_boot: str = NORMAL

    @classmethod
    def for_guest(cls, guest: Guest) -> MachineRecord:
        image = {field.name: str(getattr(guest.image, field.name)) for field in dataclasses.fields(guest.image)}
        lan, address = guest.lan, guest.lan_address
        return cls(
            name=guest.name, run_dir=str(guest.dir.parent), image=image, memory_mb=guest.memory_mb,
            cpus=guest.cpus, lan_run_dir=str(lan.dir.parent) if lan else None,
            lan_ip=address.ip if address else None, lan_mac=address.mac if address else None,
        )  # fmt: skip

    def guest(self) -> Guest:
        """The Guest, with the forwarded ports of its latest boot (whoever started it) when there was one."""
        image = ImagePaths(**{name: value if name == "key" else Path(value) for name, value in self.image.items()})
        lan = LanSwitch(Path(self.lan_run_dir)) if self.lan_run_dir else None
        address = LanAddress(self.lan_ip, self.lan_mac) if self.lan_ip and self.lan_mac else None
        guest = Guest(image, Path(self.run_dir), self.name, lan, address, self.memory_mb, self.cpus)
        try:
            booted = json.loads(guest.state_file.read_text())
            guest.ssh_port, guest.http_port = int(booted["ssh_port"]), int(booted["http_port"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # never booted: no ports yet
        return guest

    def with_next_boot(self, mode: str) -> MachineRecord:
        return dataclasses.replace(self, next_boot=mode)


class MachineStore:
    """The records in one BMC state directory; a lock per machine keeps concurrent commands apart."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir

    def add(self, guest: Guest) -> MachineRecord:
        record = MachineRecord.for_guest(guest)
        self.save(record)
        return record

    def load(self, name: str) -> MachineRecord:
        try:
            data = json.loads(self._path(name, ".json").read_text())
        except FileNotFoundError:
            raise UnknownMachine(name) from None
        return MachineRecord(**data)

    def save(self, record: MachineRecord) -> None:
        """Write atomically, so a command in another process never reads half a record."""
        path = self._path(record.name, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n")
        os.replace(tmp, path)

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the machine's lock: one power or boot command at a time per machine."""
        path = self._path(name, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _path(self, name: str, suffix: str) -> Path:
        if not MACHINE_NAME.match(name):
            raise UnknownMachine(name)
        return self.dir / f"{name}{suffix}"
