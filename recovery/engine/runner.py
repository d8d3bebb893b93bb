"""Execute a plan: blocks in order, batches of hosts in parallel, each step checked before it acts.

Every step's start and end are journaled before the run moves on, so a run
killed at any point can be resumed: finished steps are not redone, a step that
was in flight is re-checked on the host before it is applied again, and a step
that cannot be re-checked waits for the operator (`recover retry` / `skip`).

Nothing a step, a driver or a transport raises escapes: it becomes a journaled
failure of that host's step (or of the once-per-run step), and the step's
``on_failure`` decides what follows. Only a journal that can no longer be
written stops everything at once: a run that cannot record what it does must
not go on doing it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from recovery.config.inventory import Inventory
from recovery.engine import registry, state
from recovery.engine.access import Access
from recovery.engine.journal import JournalError
from recovery.engine.plan import RUN_SCOPE, Block, Plan, PlannedStep
from recovery.engine.registry import Check, StepContext, StepOutputs
from recovery.engine.runstore import Run
from recovery.errors import Fault, is_transient
from recovery.hostile import for_terminal


class RunUI(Protocol):
    """What the runner tells the operator, and the one thing it asks."""

    def event(self, step: str, host: str, status: str, detail: str = "") -> None: ...

    def acknowledge(self, prompt: str) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    status: str  # "done" | "failed" | "stopped" | "needs-operator" | "journal-failed"
    done: int
    failed: int
    skipped: int
    journal_error: str | None = None


class Runner:
    def __init__(self, plan: Plan, run: Run, inventory: Inventory, access: Access, ui: RunUI) -> None:
        self.plan, self.run, self.inventory, self.ui = plan, run, inventory, ui
        self.access = access
        self.journal = run.journal
        self._stop = threading.Event()
        self._journal_error: JournalError | None = None
        self._failed_hosts: set[str] = set()
        records = self.journal.records()
        self._pairs = state.fold(records)
        self._admitted = state.admissions(records)

    def execute(self) -> Outcome:
        self._failed_hosts = {h for (s, h), p in self._pairs.items()
                              if p.state == state.FAILED and self._stops_host(s)}
        try:
            for block in self.plan.blocks:
                if self._stop.is_set():
                    break
                self._run_block(block)
            if self._journal_error is None:
                self._guard_journal(self._record_unreached)
        except Exception as exc:  # noqa: BLE001 - a defect of the runner itself still ends in a journaled stop
            self._stop.set()
            error = _explain(exc)
            self._guard_journal(lambda: self.journal.append("run_defect", error=error))
        return self._outcome()

    # -- ordering -----------------------------------------------------------------

    def _run_block(self, block: Block) -> None:
        for batch in block.batches:
            if self._stop.is_set():
                return
            hosts = [h for h in batch if h == RUN_SCOPE or h not in self._failed_hosts]
            if len(hosts) <= 1:
                for host in hosts:
                    self._run_host(block, host)
                continue
            with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="host") as pool:
                for future in [pool.submit(self._run_host, block, h) for h in hosts]:
                    future.result()

    def _run_host(self, block: Block, host: str) -> None:
        for planned in block.steps:
            if self._stop.is_set() or host in self._failed_hosts:
                return
            if host != RUN_SCOPE and host not in planned.hosts:
                continue
            outcome = self._guard_journal(lambda: self._run_pair(planned, host))
            if outcome == state.FAILED:
                self._after_failure(planned, host)

    def _guard_journal(self, action: Any) -> Any:
        """Run ``action``; a journal that cannot be written stops the whole run where it is."""
        try:
            return action()
        except JournalError as exc:
            self._journal_error = exc
            self._stop.set()
            return None

    def _after_failure(self, planned: PlannedStep, host: str) -> None:
        policy = planned.step.on_failure
        if policy == "stop" or (host == RUN_SCOPE and policy == "skip-host"):
            self._stop.set()
        elif policy == "skip-host":
            self._failed_hosts.add(host)

    def _stops_host(self, step_id: str) -> bool:
        planned = next((p for p in self.plan.steps if p.id == step_id), None)
        return planned is not None and planned.step.on_failure != "continue"

    # -- one step on one host -----------------------------------------------------

    def _run_pair(self, planned: PlannedStep, host: str) -> str:
        pair = self._pairs.get((planned.id, host), state.PairState())
        if pair.state in (state.DONE, state.SKIPPED):
            self.ui.event(planned.id, host, pair.state, "already recorded")
            return pair.state
        if pair.state == state.FAILED:
            self.ui.event(planned.id, host, state.FAILED, pair.error or "")
            return state.FAILED
        kind = self._kind(planned)
        ctx = self._context(planned, host, kind)
        try:
            found = kind.check(ctx)
            if found is Check.DONE:
                return self._succeed(planned, host, kind.outputs_when_done(ctx), "already done (checked)")
        except JournalError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything a host, a driver or a step raises is this host's failure
            return self._fail(planned, host, f"check failed: {_explain(exc)}")
        if pair.state == state.IN_FLIGHT and found is Check.UNKNOWN:
            return self._fail(planned, host,
                              "was in flight when the run stopped and this step cannot check whether "
                              f"it took effect: `recover retry {self.run.id} --host {host} --step "
                              f"{planned.id}` applies it again, `recover skip ...` accepts it as done",
                              needs_operator=True)
        return self._apply(planned, host, kind, ctx)

    def _apply(self, planned: PlannedStep, host: str, kind: registry.StepKind, ctx: StepContext) -> str:
        step = planned.step
        self.journal.append("step_started", planned.id, host, kind=step.kind)
        self.ui.event(planned.id, host, "started", planned.description)
        retrying = Retrying(
            stop=stop_after_attempt(step.retries + 1),
            wait=wait_exponential(multiplier=step.retry_wait, max=60),
            retry=retry_if_exception(is_transient),
            before_sleep=lambda rs: self._retrying(planned, host, rs.outcome.exception()),
            reraise=True,
        )
        try:
            outputs = retrying(kind.apply, ctx)
        except JournalError:
            raise
        except Exception as exc:  # noqa: BLE001 - a defect in a step must not take down the other hosts
            return self._fail(planned, host, _explain(exc))
        if not isinstance(outputs, kind.Outputs):
            return self._fail(planned, host, f"internal error: step kind `{step.kind}` returned "
                                             f"{type(outputs).__name__}, not its {kind.Outputs.__name__}")
        return self._succeed(planned, host, outputs, "")

    def _retrying(self, planned: PlannedStep, host: str, exc: BaseException | None) -> None:
        if host != RUN_SCOPE:
            self.access(host).reset()  # a dropped connection is reopened, not reused
        self.journal.append("step_retrying", planned.id, host, error=_explain(exc))
        self.ui.event(planned.id, host, "retrying", _explain(exc))

    def _succeed(self, planned: PlannedStep, host: str, outputs: StepOutputs, detail: str) -> str:
        rec = self.journal.append("step_succeeded", planned.id, host, outputs=outputs.model_dump(mode="json"))
        self._pairs[(planned.id, host)] = state.PairState(state.DONE, outputs=rec.data["outputs"],
                                                          progress=self._progress(planned, host))
        self.ui.event(planned.id, host, state.DONE, detail)
        return state.DONE

    def _fail(self, planned: PlannedStep, host: str, error: str, needs_operator: bool = False) -> str:
        error = for_terminal(error, 1000)
        rec = self.journal.append("step_failed", planned.id, host, error=error,
                                  needs_operator=needs_operator)
        self._pairs[(planned.id, host)] = state.PairState(
            state.FAILED, error=rec.data["error"], needs_operator=needs_operator, progress=self._progress(planned, host))
        self.ui.event(planned.id, host, state.FAILED, rec.data["error"])
        return state.FAILED

    def _kind(self, planned: PlannedStep) -> registry.StepKind:
        kind = registry.get(planned.step.kind)
        assert kind is not None, "the planner refuses unknown step kinds"
        return kind

    def _context(self, planned: PlannedStep, host: str, kind: registry.StepKind) -> StepContext:
        return StepContext(
            run_id=self.run.id, run_dir=self.run.dir, step=planned.step, params=planned.params,
            host=None if host == RUN_SCOPE else host, inventory=self.inventory,
            target=self.plan.target, access=self.access,
            note=lambda text: self.ui.event(planned.id, host, "note", text),
            acknowledge=self.ui.acknowledge, outputs=self._outputs_before(planned, host), needs=kind.needs,
            remember=lambda fact: self._remember(planned, host, fact),
            remembered=self._pairs.setdefault((planned.id, host), state.PairState()).progress,
            history=lambda other: self._history(planned, other), admitted=dict(self._admitted),
        )

    def _progress(self, planned: PlannedStep, host: str) -> list[dict[str, Any]]:
        return self._pairs.get((planned.id, host), state.PairState()).progress

    def _remember(self, planned: PlannedStep, host: str, fact: dict[str, Any]) -> None:
        rec = self.journal.append("step_progress", planned.id, host, **fact)
        self._pairs.setdefault((planned.id, host), state.PairState()).progress.append(rec.data)

    def _outputs_before(self, planned: PlannedStep, host: str) -> dict[str, dict[str, Any]]:
        """Each kind's newest result on this host (or of the run) from the steps before ``planned``."""
        return state.newest_results(self.plan.steps[:self.plan.steps.index(planned)], self._pairs, host)

    def _history(self, planned: PlannedStep, host: str) -> list[registry.StepRecord]:
        """The per-host steps before ``planned`` that include ``host``, in plan order, as recorded so far."""
        history = []
        for earlier in self.plan.steps[:self.plan.steps.index(planned)]:
            if earlier.scope == "host" and host in earlier.hosts:
                pair = self._pairs.get((earlier.id, host), state.PairState())
                history.append(registry.StepRecord(earlier.id, earlier.step.kind, pair.state, pair.outputs, pair.error))
        return history

    # -- the end ------------------------------------------------------------------

    def _record_unreached(self) -> None:
        """Journal what it means that steps never ran (traffic left on the mirror, for one)."""
        for planned in self.plan.steps:
            pairs = [h for p, h in self.plan.pairs() if p is planned]
            if any(self._pairs.get((planned.id, h), state.PairState()).state != state.PENDING for h in pairs):
                continue
            kind = self._kind(planned)
            host = RUN_SCOPE if planned.scope == "run" else pairs[0] if pairs else RUN_SCOPE
            meaning = kind.unreached(self._context(planned, host, kind))
            if meaning:
                self.journal.append("step_unreached", planned.id, RUN_SCOPE, meaning=meaning)
                self.ui.event(planned.id, RUN_SCOPE, "not reached", meaning)

    def _outcome(self) -> Outcome:
        counts = {state.DONE: 0, state.FAILED: 0, state.SKIPPED: 0}
        needs_operator = False
        for planned, host in self.plan.pairs():
            pair = self._pairs.get((planned.id, host))
            if pair and pair.state in counts:
                counts[pair.state] += 1
                needs_operator |= pair.needs_operator
        if self._journal_error is not None:
            status = "journal-failed"
        elif needs_operator:
            status = "needs-operator"
        elif self._stop.is_set():
            status = "stopped"
        elif counts[state.FAILED]:
            status = "failed"
        else:
            status = "done"
        return Outcome(status, counts[state.DONE], counts[state.FAILED], counts[state.SKIPPED],
                       str(self._journal_error) if self._journal_error else None)


def _explain(exc: BaseException | None) -> str:
    """A fault's own message; anything else is a defect, named as one with its type."""
    if isinstance(exc, Fault):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"
