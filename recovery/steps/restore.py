"""`restore`: clone the clean snapshot, promote it, swap names; keep the compromised dataset.

The sub-steps and how a crash resumes them are in :mod:`recovery.zfs.swap`.
The compromised dataset stays as ``<name>.quarantine-<run>``: read-only,
unmounted, with its held ``@incident-<run>`` evidence. Nothing is destroyed.
"""

from __future__ import annotations

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.access import Channel
from recovery.engine.registry import Check, StepContext, StepKind, StepOutputs, register
from recovery.steps.find_clean import FindCleanOutputs
from recovery.steps.zfs_host import (
    agent,
    agent_errors,
    each_dataset,
    incident_snapshot,
    inspection_mounts,
    protected,
    release_mounts,
    swap_names,
)
from recovery.zfs import swap
from recovery.zfs.client import AgentClient


class RestoreParams(Strict):
    pass


class Restored(Strict):
    clean: str  # the snapshot the dataset now serves
    quarantine: str  # where the compromised state is kept, read-only and unmounted
    evidence: str  # the held evidence snapshot, moved into quarantine with it


class RestoreOutputs(StepOutputs):
    datasets: dict[str, Restored] = Field(default_factory=dict)


@register
class RestoreStep(StepKind):
    kind = "restore"
    summary = "clone + promote the clean snapshot; the compromised dataset becomes a read-only quarantine"
    Params = RestoreParams
    Outputs = RestoreOutputs
    needs = ("find_clean",)

    def check(self, ctx: StepContext) -> Check:
        client = agent(ctx)
        with agent_errors(ctx.host, "checking the restore"):
            done = all(each_dataset(lambda d: swap.restored(client, swap_names(ctx, d)), list(chosen(ctx))).values())
        return Check.DONE if done else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> RestoreOutputs:
        client = agent(ctx)
        rescue = ctx.here.channel is Channel.RESCUE
        if rescue:
            with agent_errors(ctx.host, "unmounting the host's datasets in the rescue system"):
                release_mounts(client, in_play(ctx, client))
        clean = chosen(ctx)

        def swapped(dataset: str) -> None:
            names = swap_names(ctx, dataset)
            with agent_errors(ctx.host, f"restoring {dataset} from {clean[dataset]}"):
                swap.restore(client, names, clean[dataset])
            ctx.note(f"{dataset}: now {clean[dataset].split('@')[1]}; compromised state kept as "
                     f"{names.quarantine} (read-only)")

        each_dataset(swapped, list(clean))
        if rescue:
            with agent_errors(ctx.host, "mounting the restored datasets read-only in the rescue system"):
                inspection_mounts(client, protected(ctx))
        return self._outputs(ctx)

    def outputs_when_done(self, ctx: StepContext) -> RestoreOutputs:
        """What was restored, so `undo`, `salvage` and the report know it after a resume too."""
        return self._outputs(ctx).model_copy(update={"already_done": True})

    def _outputs(self, ctx: StepContext) -> RestoreOutputs:
        restored = {}
        for dataset, clean in chosen(ctx).items():
            names = swap_names(ctx, dataset)
            evidence = incident_snapshot(ctx, names.quarantine)  # moved there with the compromised state
            restored[dataset] = Restored(clean=clean, quarantine=names.quarantine, evidence=evidence)
        return RestoreOutputs(datasets=restored)


def in_play(ctx: StepContext, client: AgentClient) -> list[str]:
    """The protected datasets and, where a resumed restore was killed in the middle of a swap, their
    quarantine or clone: what may hold a mount the swaps need released."""
    found = each_dataset(lambda dataset: swap.present(client, swap_names(ctx, dataset)), protected(ctx))
    return [name for names in found.values() for name in names]


def chosen(ctx: StepContext) -> dict[str, str]:
    """Datasets to restore and their clean snapshots, as `find_clean` journaled them."""
    found = ctx.output(FindCleanOutputs).datasets
    return {dataset: choice.clean for dataset, choice in found.items() if choice.clean}
