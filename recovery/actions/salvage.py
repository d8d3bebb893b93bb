"""`recover salvage RUN HOST PATH...`: copy legitimate files lost by a restore back from the quarantine."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any

from recovery.config.errors import ConfigError
from recovery.engine import state
from recovery.engine.access import Access
from recovery.engine.control import reopen
from recovery.engine.runstore import Run
from recovery.steps.diff import Change, DiffOutputs
from recovery.steps.find_clean import FindCleanOutputs
from recovery.steps.restore import Restored, RestoreOutputs
from recovery.zfs.client import AgentClient
from recovery.zfs.salvage import classify_for_salvage, copy_back, refusals


def salvage(run: Run, host: str, paths: list[str], force: bool,
            note: Callable[[str], None]) -> dict[str, str]:
    """Copy legitimate files from the quarantine into the restored datasets, after showing their class.

    Each path's class comes from this run's findings, matched by exact bytes:
    the diff's (indicators, suspicious changes) and find_clean's list of what the
    restore gave up (the benign files salvage is for). Anything else, or anything
    inside or holding an indicator, is refused unless ``force``: salvage fails closed.
    """
    inventory, plan = reopen(run)
    pairs = state.fold(run.journal.records())
    result = state.result_of(plan, pairs, host, RestoreOutputs)
    restored = result.datasets if result else {}
    if not restored:
        raise ConfigError([f"run {run.id} restored nothing on host '{host}': nothing to salvage from"])
    findings = _findings(state.result_of(plan, pairs, host, DiffOutputs),
                         state.result_of(plan, pairs, host, FindCleanOutputs))
    classes = {os.fsdecode(p): c for p, c in classify_for_salvage(findings, [os.fsencode(p) for p in paths]).items()}
    for path in paths:
        note(f"{path}: {classes[path]}")
    refused = refusals({os.fsencode(p): c for p, c in classes.items()})
    if refused and not force:
        raise ConfigError([f"{host}: {reason}: not salvaged (use --force if you have checked it by hand)"
                           for reason in refused])
    access = Access(inventory, run.journal)
    try:
        session = access(host).session()
        plan_by_dataset = _salvage_plan(AgentClient(session, served=True), restored, paths)
        run.journal.append("salvage_started", None, host, paths=classes, forced=force, operator=getpass.getuser())
        for dataset, chosen in plan_by_dataset.items():
            copy_back(session, restored[dataset].evidence, chosen["mountpoint"], chosen["paths"])
    finally:
        access.close()
    run.journal.append("salvage_finished", None, host, paths=paths)
    return classes


def _findings(diff: DiffOutputs | None, clean: FindCleanOutputs | None) -> list[Change]:
    listed = [f for d in diff.datasets.values() for f in d.findings] if diff else []
    for choice in clean.datasets.values() if clean else []:
        if choice.lost:
            listed += [*choice.lost.benign, *choice.lost.suspicious]
    return listed


def _salvage_plan(client: AgentClient, restored: dict[str, Restored], paths: list[str]) -> dict[str, Any]:
    mounts = {row["name"]: row["value"] for row in client.get(list(restored), ["mountpoint"])}
    chosen: dict[str, Any] = {}
    for path in paths:
        owner = max((d for d, m in mounts.items() if path.startswith(m.rstrip("/") + "/")),
                    key=lambda d: len(mounts[d]), default=None)
        if owner is None:
            raise ConfigError([f"{path} is in none of the restored datasets ({', '.join(sorted(mounts.values()))})"])
        chosen.setdefault(owner, {"mountpoint": mounts[owner], "paths": []})["paths"].append(path)
    return chosen
