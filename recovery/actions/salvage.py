"""`recover salvage RUN HOST PATH...`: copy legitimate files lost by a restore back from the quarantine."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any

from recovery.config.errors import ConfigError
from recovery.engine import state
from recovery.engine.access import Access
from recovery.engine.control import reopen
from recovery.engine.runstore import Run
from recovery.steps.diff import DiffOutputs
from recovery.steps.restore import Restored, RestoreOutputs
from recovery.zfs.client import AgentClient
from recovery.zfs.salvage import copy_back


def salvage(run: Run, host: str, paths: list[str], force: bool,
            note: Callable[[str], None]) -> dict[str, str]:
    """Copy legitimate files from the quarantine into the restored datasets, after showing their class.

    Each path's triage class comes from this run's diff; an indicator is refused unless ``force``.
    """
    inventory, plan = reopen(run)
    pairs = state.fold(run.journal.records())
    result = state.result_of(plan, pairs, host, RestoreOutputs)
    restored = result.datasets if result else {}
    if not restored:
        raise ConfigError([f"run {run.id} restored nothing on host '{host}': nothing to salvage from"])
    classes = _triage_classes(state.result_of(plan, pairs, host, DiffOutputs))
    access = Access(inventory, run.journal)
    try:
        session = access(host).session()
        plan_by_dataset = _salvage_plan(AgentClient(session), restored, paths)
        for path in paths:
            verdict = classes.get(path, "benign")
            note(f"{path}: {verdict}")
            if verdict == "indicator" and not force:
                raise ConfigError([f"{host}: {path} is an indicator of compromise: not salvaged "
                                   "(use --force if you have checked it by hand)"])
        run.journal.append("salvage_started", None, host, paths={p: classes.get(p, "benign") for p in paths},
                           forced=force, operator=getpass.getuser())
        for dataset, chosen in plan_by_dataset.items():
            copy_back(session, restored[dataset].evidence, chosen["mountpoint"], chosen["paths"])
    finally:
        access.close()
    run.journal.append("salvage_finished", None, host, paths=paths)
    return {p: classes.get(p, "benign") for p in paths}


def _triage_classes(diff: DiffOutputs | None) -> dict[str, str]:
    if diff is None:
        return {}
    return {f.path: f.verdict for d in diff.datasets.values() for f in d.findings}


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
