"""What `recover NAME` means: NAME may be a host, a group or a service."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from recovery.config.inventory import Inventory


class UnknownTarget(Exception):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "host" | "group" | "service"
    hosts: tuple[str, ...]
    services: tuple[str, ...]


def expand(inv: Inventory, name: str) -> list[str]:
    """Host names a host or group name stands for, in inventory order, without repeats."""
    if name in inv.hosts:
        return [name]
    if name not in inv.groups:
        raise UnknownTarget(name)
    found: list[str] = []
    for member in inv.groups[name]:
        for host in expand(inv, member):
            if host not in found:
                found.append(host)
    return found


def resolve(inv: Inventory, name: str) -> Target:
    if name in inv.services:
        return Target(name, "service", tuple(service_hosts(inv, name)), (name,))
    try:
        hosts = expand(inv, name)
    except UnknownTarget:
        known = sorted([*inv.hosts, *inv.groups, *inv.services])
        raise UnknownTarget(
            f"'{name}' names no host, group or service in the inventory (known: {', '.join(known)})"
        ) from None
    kind = "host" if name in inv.hosts else "group"
    return Target(name, kind, tuple(hosts), services_of(inv, hosts))


def limit(inv: Inventory, target: Target, spec: str) -> Target:
    """``target`` narrowed by ``--limit``: comma-separated host or group patterns, ``!pattern`` excludes.

    Patterns are shell-style (``eu-*``) over host and group names; a pattern that
    matches nothing in the target is an error rather than a silently smaller run.
    The target's services stay as they are: their traffic still moves as a whole.
    """
    wanted = [p.strip() for p in spec.split(",") if p.strip() and not p.strip().startswith("!")]
    unwanted = [p.strip()[1:] for p in spec.split(",") if p.strip().startswith("!")]
    hosts = [h for h in target.hosts if not wanted or any(_matches(inv, h, p) for p in wanted)]
    hosts = [h for h in hosts if not any(_matches(inv, h, p) for p in unwanted)]
    for pattern in [*wanted, *unwanted]:
        if not any(_matches(inv, h, pattern) for h in target.hosts):
            raise UnknownTarget(f"--limit: '{pattern}' matches no host of '{target.name}' "
                                f"(its hosts: {', '.join(target.hosts)})")
    if not hosts:
        raise UnknownTarget(f"--limit '{spec}' leaves no host of '{target.name}'")
    return replace(target, name=f"{target.name}[{spec}]", hosts=tuple(hosts))


def _matches(inv: Inventory, host: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(host, pattern):
        return True
    return any(fnmatch.fnmatchcase(group, pattern) and host in expand(inv, group) for group in inv.groups)


def services_of(inv: Inventory, hosts: list[str]) -> tuple[str, ...]:
    """Services that include any of these hosts: their traffic moves when the hosts are recovered."""
    chosen = []
    for service_name, service in inv.services.items():
        members = {h for m in service.hosts for h in expand(inv, m)}
        if members & set(hosts):
            chosen.append(service_name)
    return tuple(chosen)


def service_hosts(inv: Inventory, name: str) -> list[str]:
    """The hosts of service ``name``, in inventory order, without repeats."""
    hosts: list[str] = []
    for member in inv.services[name].hosts:
        hosts += [h for h in expand(inv, member) if h not in hosts]
    return hosts


def diverted_services(inv: Inventory, target: Target) -> list[str]:
    """The target's services that have a traffic block: those a run diverts to the mirror and returns."""
    return [s for s in target.services if inv.services[s].traffic.dns or inv.services[s].traffic.haproxy]


def beside_target(inv: Inventory, target: Target) -> list[str]:
    """Hosts of the diverted services that are not the target's: they leave rotation with it, unexamined."""
    found: list[str] = []
    for service in diverted_services(inv, target):
        found += [h for h in service_hosts(inv, service) if h not in target.hosts and h not in found]
    return found
