"""Step kinds, by name. The engine knows steps only through this registry.

A step kind declares what it produces (``Outputs``, a model journaled as the
step's result) and the kinds whose outputs it needs (``needs``): `restore`
needs what `find_clean` chose. The planner refuses a playbook in which a
needed kind does not come first, and a step reads another's result only
through :meth:`StepContext.output`, by the producing kind's model, never by
the name a playbook gave a step.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from recovery.errors import Fault

if TYPE_CHECKING:
    from recovery.config.inventory import Inventory
    from recovery.config.playbook import Step
    from recovery.config.targets import Target
    from recovery.engine.access import HostAccess

Scope = Literal["host", "run"]


class Check(enum.Enum):
    """What a step's check found on the host before acting."""

    DONE = "done"  # the desired state holds already: do not act
    NOT_DONE = "not-done"  # act
    UNKNOWN = "unknown"  # this step cannot tell (it has no check)


class StepFailed(Fault):
    """The step ran and did not reach its goal; the message says why, for the operator."""


class StepOutputs(BaseModel):
    """Base of every step kind's journaled result. ``already_done``: a check found the work done."""

    model_config = ConfigDict(extra="forbid")

    already_done: bool = False


class NoOutputs(StepOutputs):
    """A step kind whose result is only that it is done."""


Out = TypeVar("Out", bound=StepOutputs)


@dataclass(frozen=True)
class StepRecord:
    """One earlier step on one host as this run recorded it: what a once-per-run step judges hosts by."""

    step: str  # the step's name in the playbook
    kind: str
    state: str  # "done", "failed", "skipped", "pending", "in-flight"
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Admission:
    """An operator's word that a host may serve again without evidence from this run (journaled)."""

    operator: str
    why: str


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
    access: Callable[[str], "HostAccess"]  # access(host): the host's channel, session and BMC driver
    note: Callable[[str], None]
    acknowledge: Callable[[str], bool]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> newest journaled result
    needs: tuple[str, ...] = ()
    remember: Callable[[dict[str, Any]], None] = lambda fact: None  # journal a fact now, before acting on it
    remembered: list[dict[str, Any]] = field(default_factory=list)  # facts this step journaled, every attempt
    history: Callable[[str], list[StepRecord]] = lambda host: []  # the steps before this one on a host, in order
    admitted: dict[str, Admission] = field(default_factory=dict)  # host -> the operator's admission (`--admit`)

    @property
    def timeout(self) -> float:
        return self.step.timeout

    @property
    def here(self) -> "HostAccess":
        """The access of this step's host."""
        if self.host is None:
            raise StepFailed(f"step '{self.step.id}' runs once per run and has no host")
        return self.access(self.host)

    def output(self, model: type[Out]) -> Out:
        """The journaled result of the kind that produces ``model``, as that model."""
        kind = producer(model)
        if kind not in self.needs:
            raise StepFailed(f"step '{self.step.id}' reads `{kind}` results but does not declare that it needs them")
        found = self.optional_output(model)
        if found is None:
            raise StepFailed(f"{self._where}no `{kind}` result in this run: step '{self.step.id}' needs one")
        return found

    def optional_output(self, model: type[Out]) -> Out | None:
        """The journaled result of the kind that produces ``model``, or None if no such step ran.

        For results a step weighs when they exist and does without otherwise
        (`return` and the `sweep`): such a kind is not in ``needs``, so the
        planner does not demand it. A result of the wrong shape still fails.
        """
        kind = producer(model)
        if kind not in self.outputs:
            return None
        try:
            return model.model_validate(self.outputs[kind])
        except ValidationError as exc:
            raise StepFailed(f"{self._where}the journaled `{kind}` result has the wrong shape: "
                             f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None

    @property
    def _where(self) -> str:
        return f"{self.host}: " if self.host else ""


class StepKind:
    """Base of every step kind: ``check`` the host, then ``apply`` only if needed.

    ``apply`` returns the kind's ``Outputs`` (no secrets), stored in the journal.
    When ``check`` finds the work done, :meth:`outputs_when_done` says what the
    result is (by default an empty result marked ``already_done``); a kind
    whose results others need computes them from the host there.
    A ``repeatable`` kind changes nothing that matters when applied again (a
    read-only look, a probe, a question): it needs no check, it simply runs again.
    """

    kind: ClassVar[str]
    scope: ClassVar[Scope] = "host"
    summary: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]]
    Outputs: ClassVar[type[StepOutputs]] = NoOutputs
    needs: ClassVar[tuple[str, ...]] = ()
    repeatable: ClassVar[bool] = False

    def describe(self, params: Any) -> str:
        return self.summary

    def check(self, ctx: StepContext) -> Check:
        return Check.NOT_DONE if self.repeatable else Check.UNKNOWN

    def apply(self, ctx: StepContext) -> StepOutputs:
        raise NotImplementedError

    def outputs_when_done(self, ctx: StepContext) -> StepOutputs:
        return self.Outputs(already_done=True)

    def unreached(self, ctx: StepContext) -> str | None:
        """What it means for the run that this step never ran (journaled at the end), if it matters."""
        return None

    def foresee(self, inventory: "Inventory", target: "Target", before: tuple[str, ...],
                params: Any = None) -> dict[str, str]:
        """For the plan: what this step will do with (or decide about) each host, given the kinds
        of the steps ``before`` it. Most kinds act on the target's hosts and say nothing here."""
        return {}


_KINDS: dict[str, StepKind] = {}
_PRODUCERS: dict[type[StepOutputs], str] = {}


def register(cls: type[StepKind]) -> type[StepKind]:
    _KINDS[cls.kind] = cls()
    if cls.Outputs is not NoOutputs:
        assert _PRODUCERS.setdefault(cls.Outputs, cls.kind) == cls.kind, f"{cls.Outputs.__name__} has two producers"
    return cls


def get(kind: str) -> StepKind | None:
    return _KINDS.get(kind)


def known() -> list[str]:
    return sorted(_KINDS)


def producer(model: type[StepOutputs]) -> str:
    """The step kind whose result ``model`` is."""
    return _PRODUCERS[model]
