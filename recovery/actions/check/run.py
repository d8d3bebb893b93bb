"""Run the check: every host in parallel (bounded), then every service; items in a fixed order.

Items that read the host wait for SSH; when SSH fails they are reported as
not checked (WARN), so the one FAIL names the cause. A host's ``check.waive``
turns a FAIL it accepts into a WARN with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from recovery.actions.check import diff_cost, lessons, reach, restore_points
from recovery.actions.check.model import Item, Report, Subject, failed, waived, warned
from recovery.actions.check.remote import Runs
from recovery.actions.check.traffic import service_items
from recovery.config.inventory import Inventory
from recovery.config.targets import Target
from recovery.engine.access import Access
from recovery.errors import AdapterError
from recovery.transport.result import TransportError

#: Hosts checked at once: each holds an SSH session and maybe a BMC session.
PARALLEL_HOSTS = 8
#: Every item name, in the order shown.
HOST_ITEMS = ("secrets", "bmc", "ssh", "console", "golden", "snapshots", "snapshot-schedule", "atime",
              "rescue-image", "cgi", "automation-keys", "logs", "root-login")
SERVICE_ITEMS = ("secrets", "dns", "haproxy")
#: Items that need an SSH session on the host.
READS_HOST = ("golden", "snapshots", "snapshot-schedule", "atime", "cgi", "automation-keys", "logs", "root-login")


@dataclass(frozen=True)
class Scope:
    """What to check: hosts and services, the item names wanted (all by default), deep or not."""

    hosts: tuple[str, ...]
    services: tuple[str, ...]
    items: Collection[str] = HOST_ITEMS + SERVICE_ITEMS
    deep: bool = False
    store: Path = Path("golden-store")
    per_host: Mapping[str, Collection[str]] = field(default_factory=dict)  # a host's own items, if not ``items``

    def wanted(self, host: str) -> list[str]:
        items = self.per_host.get(host, self.items)
        return [item for item in HOST_ITEMS if item in items and (item != "console" or self.deep)]

    @classmethod
    def of(cls, target: Target, deep: bool, store: Path) -> "Scope":
        return cls(target.hosts, target.services, deep=deep, store=store)


def check(inventory: Inventory, target_name: str, scope: Scope) -> Report:
    """The report of every wanted item; nothing on any host or service is changed."""
    access = Access(inventory)
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_HOSTS) as pool:
            services = [pool.submit(_service, inventory, name, scope) for name in scope.services]
            hosts = list(pool.map(lambda name: _host(inventory, access, name, scope), scope.hosts))
            subjects = hosts + [s for s in (f.result() for f in services) if s.items]
    finally:
        access.close()
    return Report(target_name, subjects, scope.deep)


def _service(inventory: Inventory, name: str, scope: Scope) -> Subject:
    return Subject("service", name, [i for i in service_items(inventory, name) if i.name in scope.items])


def _host(inventory: Inventory, access: Access, name: str, scope: Scope) -> Subject:
    host = inventory.hosts[name]
    wanted = scope.wanted(name)
    session = None
    items: dict[str, Item] = {}
    try:
        for item in wanted:
            if item == "ssh" or (item in READS_HOST and "ssh" not in items):
                items["ssh"], session = reach.ssh_session(inventory, name)
            if item in READS_HOST and session is None:
                items[item] = warned(item, "not checked: no SSH session (see ssh)", "fix ssh first")
            elif item != "ssh":
                items[item] = _guarded(item, lambda item=item: _one(item, inventory, access, name, scope, session))
    finally:
        if session is not None:
            session.close()
    ordered = [items[item] for item in HOST_ITEMS if item in items and item in wanted]
    return Subject("host", name, [_waive(item, host.check.waive) for item in ordered])


def _one(item: str, inventory: Inventory, access: Access, name: str, scope: Scope, session: Runs | None) -> Item:
    host = inventory.hosts[name]
    simple: dict[str, Callable[[], Item]] = {
        "secrets": lambda: reach.host_secrets(inventory, name),
        "bmc": lambda: reach.bmc(inventory, name),
        "console": lambda: reach.console(access(name)),
        "rescue-image": lambda: reach.rescue_image(host, access(name).driver),
    }
    if item in simple:
        return simple[item]()
    assert session is not None
    reads: dict[str, Callable[[], Item]] = {
        "golden": lambda: restore_points.golden(restore_points.agent(session, name), name, scope.store, scope.deep),
        "snapshots": lambda: restore_points.rpo(
            restore_points.newest_snapshots(restore_points.agent(session, name), host.datasets), host),
        "snapshot-schedule": lambda: restore_points.schedule(session, host),
        "atime": lambda: diff_cost.atime(restore_points.agent(session, name), host.datasets),
        "cgi": lambda: lessons.cgi(session, host.check),
        "automation-keys": lambda: lessons.automation_keys(session, host.check, reach.own_public_key(inventory, name)),
        "logs": lambda: lessons.logs(session),
        "root-login": lambda: lessons.root_login(session),
    }
    return reads[item]()


def _guarded(item: str, work: Callable[[], Item]) -> Item:
    """An item whose host, BMC or golden store failed mid-way (a dropped connection, a manifest of the wrong
    shape) is a FAIL naming the error, never a crash of the check."""
    try:
        return work()
    except (AdapterError, TransportError, OSError, ValueError, KeyError) as exc:
        return failed(item, str(exc), "look at the host; run `recover check` again")


def _waive(item: Item, waivers: dict[str, str]) -> Item:
    return waived(item, waivers[item.name]) if item.name in waivers else item
