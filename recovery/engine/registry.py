"""Step kinds, by name. The engine knows steps only through this registry."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from recovery.config.inventory import Inventory
    from recovery.config.playbook import Step
    from recovery.config.targets import Target
    from recovery.engine.sessions import SessionPool

Scope = Literal["host", "run"]

#: Kinds of the recovery flow that a playbook may already name before they exist.
#: `recover plan` shows them as "not available" and `recover` refuses to start them.
PLANNED_KINDS: dict[str, tuple[Scope, str]] = {
}


class Check(enum.Enum):
    """What a step's check found on the host before acting."""

    DONE = "done"  # the desired state holds already: do not act
    NOT_DONE = "not-done"  # act
    UNKNOWN = "unknown"  # this step cannot tell (it has no check)


class StepFailed(Exception):
    """The step ran and did not reach its goal; the message says why, for the operator."""


@dataclass
class StepContext:
    """Everything one step on one host (or once per run) may use."""

    run_id: str
    run_dir: Path
    step: "Step"
    params: Any
    host: str | None
    inventory: "Inventory"
    target: "Target"
    session: "SessionPool"  # session(host) -> SSH, or the console attached while single-user
    note: Callable[[str], None]
    acknowledge: Callable[[str], bool]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def timeout(self) -> float:
        return self.step.timeout


class StepKind:
    """Base of every step kind: ``check`` the host, then ``apply`` only if needed.

    ``apply`` returns outputs (JSON-able, no secrets) stored in the journal.
    A ``repeatable`` kind changes nothing that matters when applied again (a
    read-only look, a probe, a question): it needs no check, it simply runs again.
    """

    kind: ClassVar[str]
    scope: ClassVar[Scope] = "host"
    summary: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]]
    repeatable: ClassVar[bool] = False

    def describe(self, params: Any) -> str:
        return self.summary

    def check(self, ctx: StepContext) -> Check:
        return Check.NOT_DONE if self.repeatable else Check.UNKNOWN

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        raise NotImplementedError


_KINDS: dict[str, StepKind] = {}


def register(cls: type[StepKind]) -> type[StepKind]:
    _KINDS[cls.kind] = cls()
    return cls


def get(kind: str) -> StepKind | None:
    return _KINDS.get(kind)


def known() -> list[str]:
    return sorted(set(_KINDS) | set(PLANNED_KINDS))
