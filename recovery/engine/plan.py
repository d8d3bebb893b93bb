"""A plan: the playbook's steps times the target's hosts, in the order they will run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from recovery.config.errors import ConfigError, from_validation, key_path
from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook, Step
from recovery.config.targets import Target, UnknownTarget, expand
from recovery.engine import registry

RUN_SCOPE = "*"  # the "host" column of a step that runs once per run


@dataclass(frozen=True)
class PlannedStep:
    index: int
    step: Step
    params: Any
    scope: str
    hosts: tuple[str, ...]
    description: str
    foreseen: tuple[tuple[str, str], ...] = ()  # (host, what the step will do with it or decide), for the plan

    @property
    def id(self) -> str:
        return self.step.id


@dataclass(frozen=True)
class Block:
    """Consecutive steps that hosts go through together, batch by batch.

    A run-scope step is a block of its own; per-host steps with the same
    ``serial`` form one block, so with ``serial = 1`` a host finishes all of
    them before the next host starts (the 2009 one-by-one recovery).
    """

    steps: tuple[PlannedStep, ...]
    batches: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Plan:
    target: Target
    playbook: Playbook
    steps: tuple[PlannedStep, ...]
    blocks: tuple[Block, ...] = field(default=())

    @property
    def destructive(self) -> bool:
        return any(s.step.confirm for s in self.steps)

    def pairs(self) -> list[tuple[PlannedStep, str]]:
        return [(s, h) for s in self.steps for h in (s.hosts if s.scope == "host" else (RUN_SCOPE,))]


def build(inventory: Inventory, playbook: Playbook, target: Target, playbook_file: Path) -> Plan:
    """Validate step kinds, params, targets and needs against the inventory, then order the work."""
    problems: list[str] = []
    planned = []
    for index, step in enumerate(playbook.steps):
        planned.append(_plan_step(inventory, target, index, step, playbook_file, problems))
    steps = tuple(p for p in planned if p is not None)
    problems += _unmet_needs(steps, playbook_file)
    if problems:
        raise ConfigError(problems)
    steps = _foresee(inventory, target, steps)
    return Plan(target, playbook, steps, _blocks(steps, playbook, target))


def _foresee(inventory: Inventory, target: Target, steps: tuple[PlannedStep, ...]) -> tuple[PlannedStep, ...]:
    """Each step's word on hosts it judges beyond acting on the target (the sweep, who `return` admits)."""
    foreseen = []
    for i, planned in enumerate(steps):
        kind = registry.get(planned.step.kind)
        assert kind is not None  # unknown kinds never become planned steps
        said = kind.foresee(inventory, target, tuple(p.step.kind for p in steps[:i]), planned.params)
        foreseen.append(replace(planned, foreseen=tuple(said.items())))
    return tuple(foreseen)


def _unmet_needs(steps: tuple[PlannedStep, ...], file: Path) -> list[str]:
    """A step that needs another kind's result must come after a step of that kind, on the same hosts."""
    problems = []
    for i, planned in enumerate(steps):
        kind = registry.get(planned.step.kind)
        assert kind is not None  # unknown kinds never become planned steps
        for needed in kind.needs:
            earlier = [p for p in steps[:i] if p.step.kind == needed]
            covered = {h for p in earlier for h in p.hosts} | ({RUN_SCOPE} if any(p.scope == "run" for p in earlier) else set())
            hosts = set(planned.hosts) if planned.scope == "host" else {RUN_SCOPE}
            if RUN_SCOPE in covered or hosts <= covered:
                continue
            missing = "" if not earlier else f" on {', '.join(sorted(hosts - covered))}"
            problems.append(f"{file}: {key_path(('steps', planned.index))}.kind: `{planned.step.kind}` needs the "
                            f"result of a `{needed}` step before it{missing}")
    return problems


def _plan_step(inventory: Inventory, target: Target, index: int, step: Step, file: Path,
               problems: list[str]) -> PlannedStep | None:
    where = f"{file}: {key_path(('steps', index))}"
    kind = registry.get(step.kind)
    if kind is None:
        problems.append(f"{where}.kind: unknown step kind '{step.kind}' "
                        f"(expected one of: {', '.join(registry.known())})")
        return None
    hosts = _step_hosts(inventory, target, step, where, problems)
    try:
        params = kind.Params.model_validate(step.params)
    except ValidationError as exc:
        problems += from_validation(str(file), exc, step.params, ("steps", index, "params")).messages
        return None
    return PlannedStep(index, step, params, kind.scope, hosts, kind.describe(params))


def _step_hosts(inventory: Inventory, target: Target, step: Step, where: str,
                problems: list[str]) -> tuple[str, ...]:
    if not step.targets:
        return target.hosts
    chosen: set[str] = set()
    for i, name in enumerate(step.targets):
        try:
            chosen.update(expand(inventory, name))
        except UnknownTarget:
            problems.append(f"{where}.targets[{i}]: no host or group named '{name}'")
    return tuple(h for h in target.hosts if h in chosen)


def _blocks(steps: tuple[PlannedStep, ...], playbook: Playbook, target: Target) -> tuple[Block, ...]:
    blocks: list[Block] = []
    current: list[PlannedStep] = []
    current_serial: int | None = None

    def close() -> None:
        if current:
            hosts = [h for h in target.hosts if any(h in s.hosts for s in current)]
            blocks.append(Block(tuple(current), _batches(hosts, playbook, current_serial or 1)))
            current.clear()

    for planned in steps:
        if planned.scope == "run":
            close()
            blocks.append(Block((planned,), ((RUN_SCOPE,),)))
            continue
        serial = planned.step.serial or playbook.order.serial
        if serial != current_serial:
            close()
            current_serial = serial
        current.append(planned)
    close()
    return tuple(blocks)


def _batches(hosts: list[str], playbook: Playbook, serial: int) -> tuple[tuple[str, ...], ...]:
    """Priority groups first (in their order), the rest after; each cut into batches of ``serial``."""
    groups: list[list[str]] = []
    placed: set[str] = set()
    for group in playbook.order.priority:
        members = [h for h in group if h in hosts and h not in placed]
        if members:
            groups.append(members)
            placed.update(members)
    rest = [h for h in hosts if h not in placed]
    if rest:
        groups.append(rest)
    return tuple(tuple(g[i:i + serial]) for g in groups for i in range(0, len(g), serial))
