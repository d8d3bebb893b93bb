"""`restore`: clone the clean snapshot, promote it, swap names; keep the compromised dataset.

The sub-steps and how a crash resumes them are in :mod:`recovery.zfs.swap`.
The compromised dataset stays as ``<name>.quarantine-<run>``: read-only,
unmounted, with its held ``@incident-<run>`` evidence. Nothing is destroyed.
"""

from __future__ import annotations

from typing import Any

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, register
from recovery.steps.zfs_host import agent, agent_errors, incident_snapshot, swap_names
from recovery.zfs import swap


class RestoreParams(Strict):
    pass


@register
class RestoreStep(StepKind):
    kind = "restore"
    summary = "clone + promote the clean snapshot; the compromised dataset becomes a read-only quarantine"
    Params = RestoreParams

    def check(self, ctx: StepContext) -> Check:
        client = agent(ctx)
        with agent_errors(ctx.host, "checking the restore"):
            done = all(swap.restored(client, swap_names(ctx, d)) for d in chosen(ctx))
        return Check.DONE if done else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        client = agent(ctx)
        restored = {}
        for dataset, clean in chosen(ctx).items():
            names = swap_names(ctx, dataset)
            with agent_errors(ctx.host, f"restoring {dataset} from {clean}"):
                swap.restore(client, names, clean)
                client.set(names.quarantine, {"recovery:restored-from": clean})
            evidence = incident_snapshot(ctx, names.quarantine)  # moved there with the compromised state
            restored[dataset] = {"clean": clean, "quarantine": names.quarantine, "evidence": evidence}
            ctx.note(f"{dataset}: now {clean.split('@')[1]}; compromised state kept as "
                     f"{names.quarantine} (read-only)")
        return {"datasets": restored}


def chosen(ctx: StepContext) -> dict[str, str]:
    """Datasets to restore and their clean snapshots, as `find_clean` journaled them."""
    found = ctx.outputs.get("find_clean", {}).get("datasets")
    if found is None:
        raise StepFailed(f"{ctx.host}: no `find_clean` result in this run: nothing to restore from")
    return {dataset: r["clean"] for dataset, r in found.items() if r.get("clean")}
