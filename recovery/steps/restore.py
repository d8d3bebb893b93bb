"""`restore`: clone the clean snapshot, promote it, swap names; keep the compromised dataset.

Per dataset ``D`` with clean snapshot ``D@S`` the sub-steps are, in order:

1. clone ``D@S`` as ``D.restore-<run>`` (created unmounted);
2. promote the clone (it takes over the snapshots up to ``S``; ``D`` keeps the later
   ones, including the held ``@incident-<run>`` evidence);
3. rename ``D`` to ``D.quarantine-<run>``;
4. make the quarantine read-only and unmountable (``readonly=on``, ``canmount=off``),
   then rename the clone to ``D``;
5. mount ``D`` where the service expects it (a local mountpoint moves with it).

Each sub-step is recognised from the datasets as they are, so a crash anywhere
resumes at the right place. Nothing is destroyed; no rollback is used.
"""

from __future__ import annotations

from typing import Any

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, register
from recovery.steps.zfs_host import agent, agent_errors, incident_snapshot, quarantine_name, short
from recovery.zfs.client import AgentClient, Dataset


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
            for dataset, clean in _chosen(ctx).items():
                if not _finished(client, ctx, dataset):
                    return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        client = agent(ctx)
        restored = {}
        for dataset, clean in _chosen(ctx).items():
            with agent_errors(ctx.host, f"restoring {dataset} from {clean}"):
                restored[dataset] = Swap(client, ctx, dataset, clean).run()
            ctx.note(f"{dataset}: now {clean.split('@')[1]}; compromised state kept as "
                     f"{quarantine_name(ctx, dataset)} (read-only)")
        return {"datasets": restored}


def _chosen(ctx: StepContext) -> dict[str, str]:
    found = ctx.outputs.get("find_clean", {}).get("datasets")
    if found is None:
        raise StepFailed(f"{ctx.host}: no `find_clean` result in this run: nothing to restore from")
    return {dataset: r["clean"] for dataset, r in found.items() if r.get("clean")}


def _finished(client: AgentClient, ctx: StepContext, dataset: str) -> bool:
    names = _filesystems(client, dataset)
    quarantine = quarantine_name(ctx, dataset)
    if quarantine not in names or dataset not in names or _clone_name(ctx, dataset) in names:
        return False
    props = _props(client, quarantine, ["readonly", "canmount"]) | _props(client, dataset, ["mounted"])
    return props == {"readonly": "on", "canmount": "off", "mounted": "yes"}


class Swap:
    """The five sub-steps for one dataset, each taken only if the state says it is due."""

    def __init__(self, client: AgentClient, ctx: StepContext, dataset: str, clean: str) -> None:
        self.client, self.dataset, self.clean = client, dataset, clean
        self.clone = _clone_name(ctx, dataset)
        self.quarantine = quarantine_name(ctx, dataset)
        self.evidence = incident_snapshot(ctx, dataset).replace(dataset, self.quarantine, 1)

    def run(self) -> dict[str, Any]:
        names = _filesystems(self.client, self.dataset)
        if self.quarantine not in names:
            if self.clone not in names:
                self.client.clone(self.clone, self.clean)
                names = _filesystems(self.client, self.dataset)
            if _is_clone(names[self.clone]):
                self.client.promote(self.clone)
            self.client.rename(self.dataset, self.quarantine)
        if self.clone in _filesystems(self.client, self.dataset):
            self.client.set(self.quarantine, {"readonly": "on", "canmount": "off"})
            self.client.rename(self.clone, self.dataset)
        self._seal_and_mount()
        return {"clean": self.clean, "quarantine": self.quarantine, "evidence": self.evidence}

    def _seal_and_mount(self) -> None:
        self.client.set(self.quarantine, {"readonly": "on", "canmount": "off",
                                          "recovery:restored-to": f"{self.dataset}@{short(self.clean)}"})
        mountpoint = _local_mountpoint(self.client, self.quarantine)
        if mountpoint and _props(self.client, self.dataset, ["mountpoint"])["mountpoint"] != mountpoint:
            self.client.set(self.dataset, {"mountpoint": mountpoint})
        if _props(self.client, self.dataset, ["mounted"])["mounted"] != "yes":
            self.client.mount(self.dataset)


def _clone_name(ctx: StepContext, dataset: str) -> str:
    return f"{dataset}.restore-{ctx.run_id}"


def _filesystems(client: AgentClient, dataset: str) -> dict[str, Dataset]:
    parent = dataset.rsplit("/", 1)[0]
    return {d.name: d for d in client.list_datasets(parent, types=("filesystem",))}


def _is_clone(row: Dataset) -> bool:
    return row.origin not in (None, "", "-")


def _props(client: AgentClient, dataset: str, names: list[str]) -> dict[str, str]:
    return {row["property"]: row["value"] for row in client.get([dataset], names)}


def _local_mountpoint(client: AgentClient, dataset: str) -> str | None:
    (row,) = client.get([dataset], ["mountpoint"])
    return row["value"] if row["source"] == "local" else None
