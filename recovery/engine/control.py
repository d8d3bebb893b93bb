"""Start, resume, retry and skip runs: the engine's entry points for the CLI and tests."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

from recovery import secrets
from recovery.config.errors import ConfigError
from recovery.config.inventory import Inventory
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import diverted_services, limit, resolve, service_hosts
from recovery.engine import plan as planning
from recovery.engine import registry, state
from recovery.engine.plan import Plan
from recovery.engine import runlog
from recovery.engine.access import Access
from recovery.engine.journal import JournalError
from recovery.engine.runner import Outcome, Runner, RunUI
from recovery.engine.runstore import Run
from recovery.offsite import collectors
from recovery.report import model as report_model
from recovery.report import render


def prepare(inventory_path: Path, playbook_path: Path, target: str,
            limit_spec: str | None = None) -> tuple[Inventory, Plan]:
    """Load both files and plan ``target`` (narrowed by ``--limit`` patterns, if given)."""
    inventory = load_inventory(inventory_path)
    playbook = load_playbook(playbook_path)
    resolved = resolve(inventory, target)
    if limit_spec:
        resolved = limit(inventory, resolved, limit_spec)
    return inventory, planning.build(inventory, playbook, resolved, playbook_path)


def resolve_secrets(inventory: Inventory, plan: Plan, inventory_path: Path) -> None:
    """Resolve (and so register for redaction) every secret the run's hosts and services reference."""
    problems = []
    for where, ref in _secret_refs(inventory, plan):
        try:
            secrets.resolve(ref, f"{inventory_path}: {where}")
        except secrets.SecretError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)


def _secret_refs(inventory: Inventory, plan: Plan) -> list[tuple[str, str]]:
    refs = []
    for name in plan.target.hosts:
        host = inventory.hosts[name]
        if host.root_password:
            refs.append((f"hosts.{name}.root_password", host.root_password))
        password = getattr(host.oob, "password", None)
        if password:
            refs.append((f"hosts.{name}.oob.password", password))
    for name in plan.target.services:
        dns = inventory.services[name].traffic.dns
        if dns:
            refs.append((f"services.{name}.traffic.dns.tsig_secret", dns.tsig_secret))
    refs += [(f"collectors.webhook[{i}].secret", hook.secret) for i, hook in enumerate(inventory.collectors.webhook)]
    return refs


def admissions(inventory: Inventory, plan: Plan, hosts: tuple[str, ...], why: str) -> dict[str, str]:
    """Hosts the operator admits into rotation by name (`--admit HOST --why TEXT`), checked before a run starts.

    Only hosts of a service this run diverts, only with a `return` to admit them,
    and never without a reason: the admission is journaled with who gave it and why.
    """
    if not hosts:
        return {}
    eligible = [h for s in diverted_services(inventory, plan.target) for h in service_hosts(inventory, s)]
    problems = [f"--admit {h}: not a host of a service this run diverts (hosts: {', '.join(eligible) or 'none'})"
                for h in hosts if h not in eligible]
    if not any(p.step.kind == "return" for p in plan.steps):
        problems.append("--admit: this playbook has no `return` step to admit hosts")
    if not why.strip():
        problems.append("--admit needs --why TEXT: the reason is journaled with the operator's name")
    if problems:
        raise ConfigError(problems)
    return {h: why.strip() for h in hosts}


def execute(run: Run, plan: Plan, inventory: Inventory, ui: RunUI, event: str,
            admitted: dict[str, str] | None = None, **data: object) -> Outcome:
    """Run (or continue) the plan, journaling the start and the end around it; the report always follows.

    ``admitted`` (host -> why, from :func:`admissions`) is journaled right after the
    start, one `host_admitted` record per host with the operator's name.

    Library chatter (paramiko's own thread logs a failed banner read with a
    traceback) goes to the run's log file, never to the operator's terminal.

    Every record, from the start to what the collectors received, goes to the
    inventory's collectors as it is written (``recovery.offsite``); their
    flush at the end waits a few seconds at most, and not at all for one that is down.
    """
    with runlog.to_file(run.dir / "run.log"):
        shipping = collectors.start(run.journal, inventory.collectors, run.id, str(run.inventory_path))
        try:
            not_started = _journal_start(run, plan, event, admitted or {}, data)
            if not_started:
                return not_started
            outcome = _run(run, plan, inventory, ui)
            if outcome.journal_error is None:
                outcome = _finish(run, outcome)
        finally:
            shipping.finish()
        write_report(run, plan)
    return outcome


def _journal_start(run: Run, plan: Plan, event: str, admitted: dict[str, str],
                   data: dict[str, object]) -> Outcome | None:
    """Journal the start and the admissions; a journal that cannot take them ends the run before anything."""
    try:
        run.journal.append(event, operator=getpass.getuser(), target=plan.target.name,
                           hosts=list(plan.target.hosts), **data)
        for host, why in admitted.items():
            run.journal.append("host_admitted", None, host, operator=getpass.getuser(), why=why)
    except JournalError as exc:
        return Outcome("journal-failed", 0, 0, 0, str(exc))
    return None


def _run(run: Run, plan: Plan, inventory: Inventory, ui: RunUI) -> Outcome:
    access = Access(inventory, run.journal)
    try:
        return Runner(plan, run, inventory, access, ui).execute()
    except KeyboardInterrupt:
        run.journal.append("run_interrupted")
        raise
    finally:
        access.close()


def _finish(run: Run, outcome: Outcome) -> Outcome:
    try:
        run.journal.append("run_finished", status=outcome.status, done=outcome.done,
                           failed=outcome.failed, skipped=outcome.skipped)
    except JournalError as exc:
        return Outcome("journal-failed", outcome.done, outcome.failed, outcome.skipped, str(exc))
    return outcome


def write_report(run: Run, plan: Plan) -> list[Path]:
    """The incident report from the journal; a report that cannot be written is logged, not raised."""
    records = run.journal.records()
    built = report_model.build(run.id, run.meta["target"], plan, records, run.journal.verify())
    try:
        return render.write(built, run.dir)
    except OSError as exc:
        logging.getLogger("recovery").error("report of %s not written: %s", run.id, exc)
        return []


def reopen(run: Run) -> tuple[Inventory, Plan]:
    """The run's own copy of its config, planned again exactly as when it started."""
    return prepare(run.inventory_path, run.playbook_path, run.meta["target"], run.meta.get("limit"))


def mark(run: Run, plan: Plan, host: str, step: str, event: str) -> None:
    """Record an operator's `retry` or `skip` of one failed (or stuck) step."""
    known = {(p.id, h) for p, h in plan.pairs()}
    if (step, host) not in known:
        steps = sorted({p.id for p in plan.steps})
        raise ConfigError([f"run {run.id} has no step '{step}' on host '{host}' "
                           f"(steps: {', '.join(steps)}; hosts: {', '.join(plan.target.hosts)})"])
    pairs = state.fold(run.journal.records())
    pair = pairs.get((step, host), state.PairState())
    if pair.state not in (state.FAILED, state.IN_FLIGHT):
        raise ConfigError([f"step '{step}' on host '{host}' is {pair.state}, not failed: "
                           "only a failed or interrupted step can be retried or skipped"])
    run.journal.append(event, step, host, operator=getpass.getuser())
    for later in _decided_after(plan, pairs, step):
        run.journal.append("retry_requested", later, planning.RUN_SCOPE, operator=getpass.getuser(),
                           because=f"'{step}' on {host} goes again")


def _decided_after(plan: Plan, pairs: dict[tuple[str, str], state.PairState], step: str) -> list[str]:
    """The run-scope steps after ``step`` that already decided about every host (the sweep, `return`):
    a host that comes back through a retry must be weighed again, or it stays out for good."""
    index = next(i for i, p in enumerate(plan.steps) if p.id == step)
    return [p.id for p in plan.steps[index + 1:]
            if p.scope == "run" and getattr(registry.get(p.step.kind), "repeatable", False)
            and pairs.get((p.id, planning.RUN_SCOPE), state.PairState()).state == state.DONE]
