"""Swap a dataset for a restored clone, and back, one resumable sub-step at a time.

``restore``: with ``D@S`` the clean snapshot of dataset ``D``:

1. clone ``D@S`` as the *clone* name (created unmounted);
2. promote the clone (it takes over the snapshots up to ``S``; ``D`` keeps the
   later ones, among them the held ``@incident-<run>`` evidence);
3. rename ``D`` to the *quarantine* name;
4. seal the quarantine (``readonly=on``, ``canmount=off``, which unmounts it)
   and rename the clone to ``D``;
5. give ``D`` the mountpoint the quarantine held locally, and mount it.

``undo`` moves the restored dataset aside (sealed the same way) and puts the
quarantine back under ``D``, writable and mounted.

Each sub-step is recognised from the datasets as they are, so a crash
anywhere resumes at the right place. Nothing is destroyed; no rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

from recovery.zfs.client import AgentClient, Dataset

SEALED = {"readonly": "on", "canmount": "off"}


@dataclass(frozen=True)
class SwapNames:
    dataset: str  # the name the service uses
    clone: str  # where the clean state is built before it takes the name
    quarantine: str  # where the compromised state is kept
    restored_aside: str  # where the restored state goes if the swap is undone

    @classmethod
    def for_run(cls, dataset: str, run_id: str) -> "SwapNames":
        return cls(dataset, f"{dataset}.restore-{run_id}", f"{dataset}.quarantine-{run_id}",
                   f"{dataset}.restored-{run_id}")


def restore(client: AgentClient, names: SwapNames, clean: str) -> None:
    present = filesystems(client, names.dataset)
    if names.quarantine not in present:
        if names.clone not in present:
            client.clone(names.clone, clean)
            present = filesystems(client, names.dataset)
        if is_clone(present[names.clone]):
            client.promote(names.clone)
        client.rename(names.dataset, names.quarantine)
    if names.clone in filesystems(client, names.dataset):
        client.set(names.quarantine, SEALED)
        client.rename(names.clone, names.dataset)
    client.set(names.quarantine, SEALED)
    _mount_like(client, names.dataset, names.quarantine)


def restored(client: AgentClient, names: SwapNames) -> bool:
    present = filesystems(client, names.dataset)
    if names.quarantine not in present or names.dataset not in present or names.clone in present:
        return False
    sealed = props(client, names.quarantine, list(SEALED)) == SEALED
    return sealed and props(client, names.dataset, ["mounted"]) == {"mounted": "yes"}


def undo(client: AgentClient, names: SwapNames) -> None:
    present = filesystems(client, names.dataset)
    if names.restored_aside not in present:
        client.rename(names.dataset, names.restored_aside)
    client.set(names.restored_aside, SEALED)
    if names.quarantine in filesystems(client, names.dataset):
        client.set(names.quarantine, {"readonly": "off", "canmount": "on"})
        client.rename(names.quarantine, names.dataset)
    _mount_like(client, names.dataset, names.restored_aside)


def undone(client: AgentClient, names: SwapNames) -> bool:
    present = filesystems(client, names.dataset)
    return (names.restored_aside in present and names.quarantine not in present
            and props(client, names.dataset, ["mounted"]) == {"mounted": "yes"})


def _mount_like(client: AgentClient, dataset: str, previous: str) -> None:
    """Mount ``dataset`` where ``previous`` was mounted (a local mountpoint moves with it)."""
    (row,) = client.get([previous], ["mountpoint"])
    if row["source"] == "local" and props(client, dataset, ["mountpoint"])["mountpoint"] != row["value"]:
        client.set(dataset, {"mountpoint": row["value"]})
    if props(client, dataset, ["mounted"])["mounted"] != "yes":
        client.mount(dataset)


def filesystems(client: AgentClient, dataset: str) -> dict[str, Dataset]:
    """The filesystems beside ``dataset`` (its parent's children), by name."""
    parent = dataset.rsplit("/", 1)[0]
    return {d.name: d for d in client.list_datasets(parent, types=("filesystem",))}


def is_clone(row: Dataset) -> bool:
    return row.origin not in (None, "", "-")


def props(client: AgentClient, dataset: str, names: list[str]) -> dict[str, str]:
    return {row["property"]: row["value"] for row in client.get([dataset], names)}
