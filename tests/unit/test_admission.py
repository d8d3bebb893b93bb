"""Who `return` lets back into rotation: only hosts this run proved clean, healthy; the rest named with a command."""

from __future__ import annotations

from typing import Any

import pytest

from recovery.engine.registry import Admission, StepRecord
from recovery.steps.admission import Facts, decide, evidence_of
from recovery.steps.sweep import CAVEAT, SweepOutputs, SweptHost

RESTORED = {"datasets": {"tank/www": {"clean": "tank/www@auto-2", "quarantine": "q", "evidence": "e"}}}


def done(step: str, kind: str, outputs: dict[str, Any] | None = None) -> StepRecord:
    return StepRecord(step, kind, "done", outputs or {})


def failed(step: str, kind: str, error: str) -> StepRecord:
    return StepRecord(step, kind, "failed", {}, error)


def facts(host: str = "eu-web", target: bool = True, history: list[StepRecord] | None = None,
          sweep: SweepOutputs | None = None, admission: Admission | None = None,
          health: str | None = None) -> Facts:
    return Facts(host, "R1", "return", target, history or [], sweep, admission, health)


RECOVERED = [done("trust-tools", "verify"), done("diff", "diff", {"indicators": 3}),
             done("restore", "restore", RESTORED), done("verify", "verify")]


def test_a_target_restored_and_then_verified_comes_back() -> None:
    decision = decide(facts(history=RECOVERED))
    assert decision.admitted and decision.reason == "restored (tank/www) and verified in this run"


def test_a_verify_before_the_restore_proves_nothing_about_the_result() -> None:
    history = RECOVERED[:3]  # trust-tools ran, the verify after the restore did not
    decision = decide(facts(history=history))
    assert not decision.admitted
    assert decision.reason == "this run did not restore and verify it" and decision.command == "recover eu-web"


def test_a_failed_step_keeps_the_target_out_with_the_retry_command() -> None:
    history = [*RECOVERED[:3], failed("verify", "verify", "eu-web: tools differ")]
    decision = decide(facts(history=history))
    assert not decision.admitted
    assert decision.reason == "failed at verify: eu-web: tools differ"
    assert decision.command == "recover retry R1 --host eu-web --step verify"


def test_nothing_to_restore_needs_a_clean_diff_and_a_verify_after_it() -> None:
    clean = [done("trust-tools", "verify"), done("diff", "diff", {"indicators": 0}),
             done("restore", "restore", {"datasets": {}}), done("verify", "verify")]
    assert evidence_of(clean) == "no indicator since golden, nothing to restore; verified in this run"
    assert evidence_of(clean[:3]) is None  # no verify after the diff
    dirty = [done("diff", "diff", {"indicators": 1}), done("restore", "restore", {"datasets": {}}),
             done("verify", "verify")]
    assert evidence_of(dirty) is None  # indicators, and nothing was restored


def test_a_playbook_without_evidence_admits_no_target() -> None:
    decision = decide(facts(history=[done("health", "http_check")]))
    assert not decision.admitted and decision.command == "recover eu-web"


def sweep(verdict: str, reason: str = "") -> SweepOutputs:
    return SweepOutputs(hosts={"us-web": SweptHost(verdict=verdict, reason=reason)})  # type: ignore[arg-type]


def test_a_host_beside_the_target_comes_back_only_on_a_clean_sweep() -> None:
    clean = decide(facts("us-web", target=False, sweep=sweep("clean")))
    assert clean.admitted and clean.reason == f"swept clean ({CAVEAT})"
    dirty = decide(facts("us-web", target=False, sweep=sweep("dirty", "2 indicators since golden")))
    assert not dirty.admitted and dirty.command == "recover us-web"
    assert dirty.reason == "sweep found it dirty: 2 indicators since golden"
    unsweepable = decide(facts("us-web", target=False, sweep=sweep("unsweepable", "us-web: no golden manifest")))
    assert not unsweepable.admitted and unsweepable.reason == "could not be swept: us-web: no golden manifest"


@pytest.mark.parametrize("outputs", [None, SweepOutputs()])
def test_no_sweep_no_sibling(outputs: SweepOutputs | None) -> None:
    decision = decide(facts("us-web", target=False, sweep=outputs))
    assert not decision.admitted
    assert decision.reason == "not a target and not swept in this run" and decision.command == "recover us-web"


def test_an_operator_admits_by_name_against_the_evidence_and_is_named() -> None:
    decision = decide(facts("us-web", target=False, sweep=sweep("dirty", "1 indicators since golden"),
                            admission=Admission("alice", "rebuilt by hand yesterday")))
    assert decision.admitted and decision.operator == "alice"
    assert decision.reason == ("admitted by alice (rebuilt by hand yesterday) against the run's evidence: "
                               "sweep found it dirty: 1 indicators since golden")


def test_no_admission_and_no_evidence_stays_out_whatever_the_confirmation() -> None:
    """`--yes` confirms the run; it is no admission: without one, the evidence alone decides."""
    assert not decide(facts("us-web", target=False)).admitted


@pytest.mark.parametrize("case", ["proven", "admitted"])
def test_health_is_required_even_of_proven_or_admitted_hosts(case: str) -> None:
    given = facts(history=RECOVERED, health="http://eu-web/: status 500") if case == "proven" else \
        facts("us-web", target=False, admission=Admission("alice", "known good"), health="connection refused")
    decision = decide(given)
    assert not decision.admitted
    assert "but its health check fails" in decision.reason
    assert decision.command == "recover retry R1 --host '*' --step return"


def test_a_restored_target_changed_since_its_restore_stays_out() -> None:
    again = SweptHost(verdict="dirty", reason="1 indicators since its restore (/srv/www/cgi-bin/a.cgi)")
    decision = decide(facts(history=RECOVERED, sweep=SweepOutputs(restored={"eu-web": again})))
    assert not decision.admitted and decision.command == "recover eu-web"
    assert decision.reason.startswith("restored (tank/www) and verified in this run, but changed since its restore")
    clean = SweepOutputs(restored={"eu-web": SweptHost(verdict="clean")})
    assert decide(facts(history=RECOVERED, sweep=clean)).reason.endswith("; nothing new since")
    unseen = SweepOutputs(restored={"eu-web": SweptHost(verdict="unsweepable", reason="timeout")})
    assert not decide(facts(history=RECOVERED, sweep=unseen)).admitted
