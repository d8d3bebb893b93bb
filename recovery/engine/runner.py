"""Execute a plan: blocks in order, batches of hosts in parallel, each step checked before it acts.

Every step's start and end are journaled before the run moves on, so a run
killed at any point can be resumed: finished steps are not redone, a step that
was in flight is re-checked on the host before it is applied again, and a step
that cannot be re-checked waits for the operator (`recover retry` / `skip`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from recovery.config.inventory import Inventory
from recovery.engine import registry, state
from recovery.engine.plan import RUN_SCOPE, Block, Plan, PlannedStep
from recovery.engine.registry import Check, StepContext, StepFailed
from recovery.engine.runstore import Run
from recovery.engine.sessions import SessionPool
from recovery.hostile import for_terminal
from recovery.transport.result import TransportError


class RunUI(Protocol):
    """What the runner tells the operator, and the one thing it asks."""

    def event(self, step: str, host: str, status: str, detail: str = "") -> None: ...

    def acknowledge(self, prompt: str) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    status: str  # "done" | "failed" | "stopped" | "needs-operator"
    done: int
    failed: int
    skipped: int


class Runner:
    def __init__(self, plan: Plan, run: Run, inventory: Inventory,
                 session: SessionPool, ui: RunUI) -> None:
        self.plan, self.run, self.inventory, self.ui = plan, run, inventory, ui
        self.session = session
        self.journal = run.journal
        self._stop = threading.Event()
        self._failed_hosts: set[str] = set()
        self._pairs = state.fold(self.journal.records())

    def execute(self) -> Outcome:
        self._failed_hosts = {h for (s, h), p in self._pairs.items()
                              if p.state == state.FAILED and self._stops_host(s)}
        for block in self.plan.blocks:
            if self._stop.is_set():
                break
            self._run_block(block)
        return self._outcome()

    # -- ordering -----------------------------------------------------------------

    def _run_block(self, block: Block) -> None:
        for batch in block.batches:
            if self._stop.is_set():
                return
            hosts = [h for h in batch if h == RUN_SCOPE or h not in self._failed_hosts]
            if len(hosts) == 1:
                self._run_host(block, hosts[0])
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
            if self._run_pair(planned, host) == state.FAILED:
                self._after_failure(planned, host)

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
        kind = registry.get(planned.step.kind)
        assert kind is not None, "plans with unavailable steps never reach the runner"
        ctx = self._context(planned, host)
        try:
            found = kind.check(ctx)
        except (StepFailed, TransportError) as exc:
            return self._fail(planned, host, f"check failed: {exc}")
        if found is Check.DONE:
            return self._succeed(planned, host, {"already_done": True}, "already done (checked)")
        if pair.state == state.IN_FLIGHT and found is Check.UNKNOWN:
            return self._fail(planned, host,
                              "was in flight when the run stopped and this step cannot check whether "
                              f"it took effect: `recover retry {self.run.id} --host {host} --step "
                              f"{planned.id}` applies it again, `recover skip ...` accepts it as done",
                              needs_operator=True)
        return self._apply(planned, host, kind, ctx)

    def _apply(self, planned: PlannedStep, host: str, kind: registry.StepKind,
               ctx: StepContext) -> str:
        step = planned.step
        self.journal.append("step_started", planned.id, host, kind=step.kind)
        self.ui.event(planned.id, host, "started", planned.description)
        retrying = Retrying(
            stop=stop_after_attempt(step.retries + 1),
            wait=wait_exponential(multiplier=step.retry_wait, max=60),
            retry=retry_if_exception_type((StepFailed, TransportError)),
            before_sleep=lambda rs: self._retrying(planned, host, rs.outcome.exception()),
            reraise=True,
        )
        try:
            outputs = retrying(kind.apply, ctx)
        except (StepFailed, TransportError) as exc:
            return self._fail(planned, host, str(exc))
        except Exception as exc:  # a defect in a step must not take down the other hosts
            return self._fail(planned, host, f"internal error: {type(exc).__name__}: {exc}")
        return self._succeed(planned, host, outputs or {}, "")

    def _retrying(self, planned: PlannedStep, host: str, exc: BaseException | None) -> None:
        self.journal.append("step_retrying", planned.id, host, error=str(exc))
        self.ui.event(planned.id, host, "retrying", str(exc))

    def _succeed(self, planned: PlannedStep, host: str, outputs: dict[str, Any], detail: str) -> str:
        rec = self.journal.append("step_succeeded", planned.id, host, outputs=outputs)
        self._pairs[(planned.id, host)] = state.PairState(state.DONE, outputs=rec.data["outputs"])
        self.ui.event(planned.id, host, state.DONE, detail)
        return state.DONE

    def _fail(self, planned: PlannedStep, host: str, error: str, needs_operator: bool = False) -> str:
        error = for_terminal(error, 1000)
        rec = self.journal.append("step_failed", planned.id, host, error=error,
                                  needs_operator=needs_operator)
        self._pairs[(planned.id, host)] = state.PairState(
            state.FAILED, error=rec.data["error"], needs_operator=needs_operator)
        self.ui.event(planned.id, host, state.FAILED, rec.data["error"])
        return state.FAILED

    def _context(self, planned: PlannedStep, host: str) -> StepContext:
        outputs = {s: p.outputs for (s, h), p in self._pairs.items() if h == host and p.state == state.DONE}
        return StepContext(
            run_id=self.run.id, run_dir=self.run.dir, step=planned.step, params=planned.params,
            host=None if host == RUN_SCOPE else host, inventory=self.inventory,
            target=self.plan.target, session=self.session,
            note=lambda text: self.ui.event(planned.id, host, "note", text),
            acknowledge=self.ui.acknowledge, outputs=outputs,
        )

    def _outcome(self) -> Outcome:
        counts = {state.DONE: 0, state.FAILED: 0, state.SKIPPED: 0}
        needs_operator = False
        for planned, host in self.plan.pairs():
            pair = self._pairs.get((planned.id, host))
            if pair and pair.state in counts:
                counts[pair.state] += 1
                needs_operator |= pair.needs_operator
        if needs_operator:
            status = "needs-operator"
        elif self._stop.is_set():
            status = "stopped"
        elif counts[state.FAILED]:
            status = "failed"
        else:
            status = "done"
        return Outcome(status, counts[state.DONE], counts[state.FAILED], counts[state.SKIPPED])
