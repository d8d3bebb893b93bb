"""Start, resume, retry and skip runs: the engine's entry points for the CLI and tests."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Callable

from recovery import secrets
from recovery.config.errors import ConfigError
from recovery.config.inventory import Inventory
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import resolve
from recovery.engine import plan as planning
from recovery.engine import state
from recovery.engine.plan import Plan
from recovery.engine.runner import Outcome, Runner, RunUI
from recovery.engine.runstore import Run
from recovery.engine.sessions import SessionPool
from recovery.report import model as report_model
from recovery.report import render
from recovery.zfs import manifest, swap
from recovery.zfs.client import AgentClient
from recovery.zfs.salvage import copy_back
from recovery.zfs.swap import SwapNames


def prepare(inventory_path: Path, playbook_path: Path, target: str) -> tuple[Inventory, Plan]:
    inventory = load_inventory(inventory_path)
    playbook = load_playbook(playbook_path)
    return inventory, planning.build(inventory, playbook, resolve(inventory, target), playbook_path)


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
    return refs


def execute(run: Run, plan: Plan, inventory: Inventory, ui: RunUI, event: str, **data: object) -> Outcome:
    """Run (or continue) the plan, journaling the start and the end around it."""
    run.journal.append(event, operator=getpass.getuser(), target=plan.target.name,
                       hosts=list(plan.target.hosts), **data)
    pool = SessionPool(inventory)
    try:
        outcome = Runner(plan, run, inventory, pool, ui).execute()
    except KeyboardInterrupt:
        run.journal.append("run_interrupted")
        raise
    finally:
        pool.close()
    run.journal.append("run_finished", status=outcome.status, done=outcome.done,
                       failed=outcome.failed, skipped=outcome.skipped)
    write_report(run, plan)
    return outcome


def write_report(run: Run, plan: Plan) -> list[Path]:
    records = run.journal.records()
    built = report_model.build(run.id, run.meta["target"], plan, records, run.journal.verify())
    return render.write(built, run.dir)


def undo(run: Run, host: str, note: Callable[[str], None]) -> list[str]:
    """Swap the restored datasets of ``host`` back: the quarantined state serves again.

    The restored state is kept beside it (``<name>.restored-<run>``, read-only);
    nothing is destroyed. Journaled in the run.
    """
    inventory, plan = reopen(run)
    datasets = list(_step_outputs(run, plan, host, "restore").get("datasets", {}))
    if not datasets:
        raise ConfigError([f"run {run.id} restored nothing on host '{host}': nothing to undo"])
    run.journal.append("undo_started", None, host, datasets=datasets, operator=getpass.getuser())
    pool = SessionPool(inventory)
    try:
        client = AgentClient(pool(host))
        for dataset in datasets:
            names = SwapNames.for_run(dataset, run.id)
            if not swap.undone(client, names):
                swap.undo(client, names)
            note(f"{host}: {dataset} serves the pre-restore state again; restored state kept as "
                 f"{names.restored_aside}")
    finally:
        pool.close()
    run.journal.append("undo_finished", None, host, datasets=datasets)
    return datasets


def salvage(run: Run, host: str, paths: list[str], force: bool,
            note: Callable[[str], None]) -> dict[str, str]:
    """Copy legitimate files from the quarantine into the restored datasets, after showing their class.

    Each path's triage class comes from this run's diff; an indicator is refused unless ``force``.
    """
    inventory, plan = reopen(run)
    restored = _step_outputs(run, plan, host, "restore").get("datasets", {})
    if not restored:
        raise ConfigError([f"run {run.id} restored nothing on host '{host}': nothing to salvage from"])
    classes = _triage_classes(run, plan, host)
    pool = SessionPool(inventory)
    try:
        session = pool(host)
        client = AgentClient(session)
        plan_by_dataset = _salvage_plan(client, restored, paths)
        for path in paths:
            verdict = classes.get(path, "benign")
            note(f"{path}: {verdict}")
            if verdict == "indicator" and not force:
                raise ConfigError([f"{host}: {path} is an indicator of compromise: not salvaged "
                                   "(use --force if you have checked it by hand)"])
        run.journal.append("salvage_started", None, host, paths={p: classes.get(p, "benign") for p in paths},
                           forced=force, operator=getpass.getuser())
        for dataset, chosen in plan_by_dataset.items():
            copy_back(session, restored[dataset]["evidence"], chosen["mountpoint"], chosen["paths"])
    finally:
        pool.close()
    run.journal.append("salvage_finished", None, host, paths=paths)
    return {p: classes.get(p, "benign") for p in paths}


def _step_outputs(run: Run, plan: Plan, host: str, kind: str) -> dict[str, Any]:
    pairs = state.fold(run.journal.records())
    for planned in plan.steps:
        if planned.step.kind == kind and (planned.id, host) in pairs:
            return pairs[(planned.id, host)].outputs
    return {}


def _triage_classes(run: Run, plan: Plan, host: str) -> dict[str, str]:
    found = _step_outputs(run, plan, host, "diff").get("datasets", {})
    return {f["path"]: f["verdict"] for d in found.values() for f in d.get("findings", [])}


def _salvage_plan(client: AgentClient, restored: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    mounts = {row["name"]: row["value"] for row in client.get(list(restored), ["mountpoint"])}
    chosen: dict[str, Any] = {}
    for path in paths:
        owner = max((d for d, m in mounts.items() if path.startswith(m.rstrip("/") + "/")),
                    key=lambda d: len(mounts[d]), default=None)
        if owner is None:
            raise ConfigError([f"{path} is in none of the restored datasets ({', '.join(sorted(mounts.values()))})"])
        chosen.setdefault(owner, {"mountpoint": mounts[owner], "paths": []})["paths"].append(path)
    return chosen


def golden_verify(inventory_path: Path, target: str, store: Path) -> dict[str, list[manifest.Finding]]:
    """Each host's golden snapshots and stored streams against its newest manifest."""
    inventory = load_inventory(inventory_path)
    hosts = resolve(inventory, target).hosts
    pool = SessionPool(inventory)
    results: dict[str, list[manifest.Finding]] = {}
    try:
        for host in hosts:
            try:
                golden = manifest.newest(store, host)
            except manifest.ManifestMissing as exc:
                results[host] = [manifest.Finding("golden manifest", False, str(exc))]
                continue
            results[host] = manifest.check(AgentClient(pool(host)), golden)
    finally:
        pool.close()
    return results


def reopen(run: Run) -> tuple[Inventory, Plan]:
    """The run's own copy of its config, planned again exactly as when it started."""
    return prepare(run.inventory_path, run.playbook_path, run.meta["target"])


def mark(run: Run, plan: Plan, host: str, step: str, event: str) -> None:
    """Record an operator's `retry` or `skip` of one failed (or stuck) step."""
    known = {(p.id, h) for p, h in plan.pairs()}
    if (step, host) not in known:
        steps = sorted({p.id for p in plan.steps})
        raise ConfigError([f"run {run.id} has no step '{step}' on host '{host}' "
                           f"(steps: {', '.join(steps)}; hosts: {', '.join(plan.target.hosts)})"])
    pair = state.fold(run.journal.records()).get((step, host), state.PairState())
    if pair.state not in (state.FAILED, state.IN_FLIGHT):
        raise ConfigError([f"step '{step}' on host '{host}' is {pair.state}, not failed: "
                           "only a failed or interrupted step can be retried or skipped"])
    run.journal.append(event, step, host, operator=getpass.getuser())
