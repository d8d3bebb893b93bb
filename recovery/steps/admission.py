"""Who `return` puts back into rotation: hosts this run has evidence for, and only if healthy.

Answering HTTP 200 says nothing about an intruder: in 2009 both web servers
had the scripts, and a run started on one of them must not end up serving
from the other, unexamined. So a host of the service comes back only when

- the run restored and verified it (a `verify` done after its `restore`), or,
  for a target with nothing to restore, its `diff` found no indicator and a
  `verify` after it passed, and the `sweep`'s second look found nothing new
  since the restore; or
- the `sweep` found it clean (weaker: the host's own tools, see
  :data:`recovery.steps.sweep.CAVEAT`); or
- an operator admitted it by name (`--admit`, journaled with who and why);

and its health checks pass. Every other host stays out, with the reason and
the command that would recover it. This module decides and does nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from recovery.config.base import Strict
from recovery.engine import state
from recovery.engine.registry import Admission, StepRecord
from recovery.steps.diff import DiffOutputs
from recovery.steps.restore import RestoreOutputs
from recovery.steps.sweep import CAVEAT, SweepOutputs


class HostDecision(Strict):
    """Whether one host of the service came back, why, and what would recover it if not (journaled)."""

    admitted: bool
    reason: str
    command: str = ""  # for a host kept out: the command that would recover it
    operator: str = ""  # who admitted it by name, when an operator did


@dataclass(frozen=True)
class Facts:
    """Everything the decision about one host rests on, gathered by `return`."""

    host: str
    run_id: str
    step: str  # the `return` step's name, for `recover retry`
    target: bool  # a target of this run (else a host beside it, for the sweep)
    history: list[StepRecord]  # the host's steps before `return`, in plan order
    sweep: SweepOutputs | None  # None: no sweep ran in this run
    admission: Admission | None
    health: str | None  # the first failing health check; None when healthy


def decide(facts: Facts) -> HostDecision:
    """The evidence first, then the operator's word against it; a host that does not serve stays out."""
    decision = target_decision(facts) if facts.target else sweep_decision(facts)
    if not decision.admitted and facts.admission is not None:
        decision = HostDecision(admitted=True, operator=facts.admission.operator,
                                reason=f"admitted by {facts.admission.operator} ({facts.admission.why}) "
                                       f"against the run's evidence: {decision.reason}")
    if decision.admitted and facts.health:
        return HostDecision(admitted=False, reason=f"{decision.reason}; but its health check fails: {facts.health}",
                            command=f"recover retry {facts.run_id} --host '*' --step {facts.step}")
    return decision


def target_decision(facts: Facts) -> HostDecision:
    """A target comes back on this run's own restore and verify, or a clean diff and verify."""
    failed = next((r for r in facts.history if r.state == state.FAILED), None)
    if failed is not None:
        return HostDecision(admitted=False, reason=f"failed at {failed.step}: {failed.error}",
                            command=f"recover retry {facts.run_id} --host {facts.host} --step {failed.step}")
    proof = evidence_of(facts.history)
    if proof is None:
        return HostDecision(admitted=False, reason="this run did not restore and verify it",
                            command=f"recover {facts.host}")
    again = facts.sweep.restored.get(facts.host) if facts.sweep else None
    if again is not None and again.verdict != "clean":
        what = "changed since its restore" if again.verdict == "dirty" else "could not be looked at again"
        return HostDecision(admitted=False, reason=f"{proof}, but {what}: {again.reason}",
                            command=f"recover {facts.host}")
    return HostDecision(admitted=True, reason=proof + ("; nothing new since" if again else ""))


def evidence_of(history: list[StepRecord]) -> str | None:
    """Why the recorded steps show the host clean: a `verify` done after the `restore` or the clean
    `diff` it rests on (a `verify` before them, like trust-tools, proves nothing about the result)."""
    done = [(i, r) for i, r in enumerate(history) if r.state == state.DONE]
    verified = max((i for i, r in done if r.kind == "verify"), default=-1)
    for i, record in reversed(done):
        if record.kind == "restore" and (datasets := RestoreOutputs.model_validate(record.outputs).datasets):
            return f"restored ({', '.join(sorted(datasets))}) and verified in this run" if verified > i else None
    for i, record in reversed(done):
        if record.kind == "diff":
            clean = DiffOutputs.model_validate(record.outputs).indicators == 0
            return "no indicator since golden, nothing to restore; verified in this run" \
                if clean and verified > i else None
    return None


def sweep_decision(facts: Facts) -> HostDecision:
    """A host beside the target comes back only on a clean sweep."""
    recover = f"recover {facts.host}"
    swept = facts.sweep.hosts.get(facts.host) if facts.sweep else None
    if swept is None:
        return HostDecision(admitted=False, reason="not a target and not swept in this run", command=recover)
    if swept.verdict == "clean":
        return HostDecision(admitted=True, reason=f"swept clean ({CAVEAT})")
    what = "sweep found it dirty" if swept.verdict == "dirty" else "could not be swept"
    return HostDecision(admitted=False, reason=f"{what}: {swept.reason}", command=recover)
