"""Read inventory and playbook files (TOML 1.0 through the standard library's tomllib)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from recovery.config.errors import ConfigError, from_validation, key_path
from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _validate(model: type[M], path: Path, data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(str(path), exc, data) from None


def load_inventory(path: Path) -> Inventory:
    inventory = _validate(Inventory, path, read_toml(path))
    problems = [f"{path}: {where}: {what}" for where, what in inventory_problems(inventory)]
    if problems:
        raise ConfigError(problems)
    return inventory


def load_playbook(path: Path) -> Playbook:
    playbook = _validate(Playbook, path, read_toml(path))
    seen: set[str] = set()
    problems = []
    for index, step in enumerate(playbook.steps):
        if step.id in seen:
            where = key_path(("steps", index, "name"))
            problems.append(f"{path}: {where}: another step is already named '{step.id}' "
                            "(give each step a unique 'name')")
        seen.add(step.id)
    if problems:
        raise ConfigError(problems)
    return playbook


def inventory_problems(inv: Inventory) -> list[tuple[str, str]]:
    """References that point nowhere, names used twice, and group cycles."""
    problems: list[tuple[str, str]] = []
    names = {"host": set(inv.hosts), "group": set(inv.groups), "service": set(inv.services)}
    for kind, other in (("group", "host"), ("service", "host"), ("service", "group")):
        for name in sorted(names[kind] & names[other]):
            problems.append((f"{kind}s.{name}", f"'{name}' is also the name of a {other}; "
                             "names must be unique across hosts, groups and services"))
    for host_name, host in inv.hosts.items():
        gw = host.ssh.gateway
        if gw is not None and gw not in inv.hosts:
            problems.append((f"hosts.{host_name}.ssh.gateway", f"no host named '{gw}'"))
        if gw == host_name:
            problems.append((f"hosts.{host_name}.ssh.gateway", "a host cannot be its own gateway"))
    for group, members in inv.groups.items():
        for i, member in enumerate(members):
            if member not in inv.hosts and member not in inv.groups:
                problems.append((f"groups.{group}[{i}]", f"no host or group named '{member}'"))
    for service_name, service in inv.services.items():
        for i, member in enumerate(service.hosts):
            if member not in inv.hosts and member not in inv.groups:
                problems.append((f"services.{service_name}.hosts[{i}]",
                                 f"no host or group named '{member}'"))
        if service.mirror is not None and service.mirror not in inv.hosts:
            problems.append((f"services.{service_name}.mirror", f"no host named '{service.mirror}'"))
    problems.extend(_group_cycles(inv.groups))
    return problems


def _group_cycles(groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    problems = []
    for start in groups:
        stack, seen = list(groups[start]), set()
        while stack:
            member = stack.pop()
            if member == start:
                problems.append((f"groups.{start}", f"group '{start}' contains itself"))
                break
            if member in groups and member not in seen:
                seen.add(member)
                stack.extend(groups[member])
    return problems
