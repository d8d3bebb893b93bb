"""`recover undo RUN HOST`: swap the restored datasets back; the quarantined state serves again."""

from __future__ import annotations

import getpass
from collections.abc import Callable

from recovery.config.errors import ConfigError
from recovery.engine import state
from recovery.engine.access import Access
from recovery.engine.control import reopen
from recovery.engine.runstore import Run
from recovery.steps.restore import RestoreOutputs
from recovery.zfs import swap
from recovery.zfs.client import AgentClient
from recovery.zfs.swap import SwapNames


def undo(run: Run, host: str, note: Callable[[str], None]) -> list[str]:
    """Swap the restored datasets of ``host`` back: the quarantined state serves again.

    The restored state is kept beside it (``<name>.restored-<run>``, read-only);
    nothing is destroyed. Journaled in the run.
    """
    inventory, plan = reopen(run)
    restored = state.result_of(plan, state.fold(run.journal.records()), host, RestoreOutputs)
    datasets = list(restored.datasets) if restored else []
    if not datasets:
        raise ConfigError([f"run {run.id} restored nothing on host '{host}': nothing to undo"])
    run.journal.append("undo_started", None, host, datasets=datasets, operator=getpass.getuser())
    access = Access(inventory, run.journal)
    try:
        client = AgentClient(access(host).session(), served=True)
        for dataset in datasets:
            names = SwapNames.for_run(dataset, run.id)
            if not swap.undone(client, names):
                swap.undo(client, names)
            note(f"{host}: {dataset} serves the pre-restore state again; restored state kept as "
                 f"{names.restored_aside}")
    finally:
        access.close()
    run.journal.append("undo_finished", None, host, datasets=datasets)
    return datasets
