"""The state of every (step, host) pair, derived from the journal alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recovery.engine.journal import Record
from recovery.engine.registry import Admission, Out, producer

if TYPE_CHECKING:
    from recovery.engine.plan import Plan, PlannedStep

PENDING, IN_FLIGHT, DONE, FAILED, SKIPPED = "pending", "in-flight", "done", "failed", "skipped"

_EVENT_STATE = {
    "step_started": IN_FLIGHT,
    "step_succeeded": DONE,
    "step_failed": FAILED,
    "step_skipped": SKIPPED,
    "retry_requested": PENDING,
}


@dataclass
class PairState:
    state: str = PENDING
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    needs_operator: bool = False
    progress: list[dict[str, Any]] = field(default_factory=list)  # facts a step journaled while it worked


def fold(records: list[Record]) -> dict[tuple[str, str], PairState]:
    """Replay the journal: the last event of each pair decides its state."""
    pairs: dict[tuple[str, str], PairState] = {}
    for rec in records:
        if rec.event == "step_progress" and rec.step is not None and rec.host is not None:
            pairs.setdefault((rec.step, rec.host), PairState()).progress.append(rec.data)
            continue
        if rec.event not in _EVENT_STATE or rec.step is None or rec.host is None:
            continue
        pair = pairs.setdefault((rec.step, rec.host), PairState())
        pair.state = _EVENT_STATE[rec.event]
        if rec.event == "step_started":
            pair.started, pair.finished, pair.error = rec.ts, None, None
            pair.attempts += 1
            pair.needs_operator = False
        elif rec.event in ("step_succeeded", "step_failed", "step_skipped"):
            pair.finished = rec.ts
            pair.error = rec.data.get("error")
            pair.outputs = rec.data.get("outputs", {})
            pair.needs_operator = bool(rec.data.get("needs_operator"))
        elif rec.event == "retry_requested":
            pair.error, pair.needs_operator = None, False
    return pairs


def admissions(records: list[Record]) -> dict[str, Admission]:
    """Hosts an operator admitted into rotation by name (`--admit`), with who and why; the last word counts."""
    admitted = {}
    for rec in records:
        if rec.event == "host_admitted" and rec.host:
            admitted[rec.host] = Admission(str(rec.data.get("operator", "?")), str(rec.data.get("why", "")))
    return admitted


def run_status(records: list[Record]) -> str | None:
    """The status of the last finish of the run, or None if it never finished."""
    status = None
    for rec in records:
        if rec.event == "run_finished":
            status = rec.data.get("status")
        elif rec.event in ("run_started", "run_resumed"):
            status = None
    return status


def newest_results(steps: Iterable["PlannedStep"], pairs: dict[tuple[str, str], PairState],
                   host: str) -> dict[str, dict[str, Any]]:
    """Each step kind's newest done result among ``steps`` (in plan order), on ``host`` or of the run."""
    results: dict[str, dict[str, Any]] = {}
    for planned in steps:
        pair = pairs.get((planned.id, host)) or pairs.get((planned.id, "*"))
        if pair is not None and pair.state == DONE:
            results[planned.step.kind] = pair.outputs
    return results


def result_of(plan: "Plan", pairs: dict[tuple[str, str], PairState], host: str, model: type[Out]) -> Out | None:
    """The newest journaled result, on ``host`` (or of the run), of the step kind that produces ``model``."""
    found = newest_results(plan.steps, pairs, host).get(producer(model))
    return None if found is None else model.model_validate(found)
