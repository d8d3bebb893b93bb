"""Swap a dataset for a restored clone, and back, one resumable sub-step at a time.

``restore``: with ``D@S`` the clean snapshot of dataset ``D``:

1. clone ``D@S`` as the *clone* name (created unmounted);
2. promote the clone (it takes over the snapshots up to ``S``; ``D`` keeps the
   later ones, among them the held ``@incident-<run>`` evidence);
3. rename ``D`` to the *quarantine* name;
4. seal the quarantine (``readonly=on``, ``canmount=off``, which unmounts it; the ``canmount`` it
   had and the clean snapshot are kept on it in the same ``zfs set``)
   and rename the clone to ``D``;
5. give ``D`` the mountpoint and ``canmount`` the quarantine held, point the
   pool's ``bootfs`` at ``D`` if it followed the quarantine (a boot
   environment: ``bootfs`` names a dataset by object, so it moves with the
   rename), and mount ``D`` unless it mounts only on demand (a boot environment
   is ``canmount=noauto``; it is mounted by the initramfs that boots it).

``undo`` moves the restored dataset aside (sealed the same way) and puts the
quarantine back under ``D``, writable, as it mounted and booted before.

A boot environment can be swapped only where it is not the running root: from
the rescue system (pools imported with an altroot). In the host's own
single-user mode its root is that very dataset, which cannot be renamed,
sealed or replaced under the running system.

Each sub-step is recognised from the datasets as they are, so a crash
anywhere resumes at the right place. Nothing is destroyed; no rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

from recovery.errors import Fault
from recovery.zfs.client import AgentClient, Dataset, PoolState

SEALED = {"readonly": "on", "canmount": "off"}
#: What a swap reads of the dataset before it starts, in one ``zfs get``.
_BEFORE_SWAP = ("mountpoint", "mounted", "canmount")
#: The ``canmount`` a dataset had before it was sealed, kept on it so undo gives it back.
CANMOUNT_KEPT = "recovery:canmount"
#: The clean snapshot a quarantined dataset was swapped for.
RESTORED_FROM = "recovery:restored-from"


class RunningRoot(Fault):
    """The dataset is the running system's root: it can only be swapped from the rescue system."""


@dataclass(frozen=True)
class SwapNames:
    dataset: str  # the name the service uses
    clone: str  # where the clean state is built before it takes the name
    quarantine: str  # where the compromised state is kept
    restored_aside: str  # where the restored state goes if the swap is undone

    @classmethod
    def for_run(cls, dataset: str, run_id: str) -> SwapNames:
        return cls(dataset, f"{dataset}.restore-{run_id}", f"{dataset}.quarantine-{run_id}",
                   f"{dataset}.restored-{run_id}")


def restore(client: AgentClient, names: SwapNames, clean: str) -> None:
    """Swap ``names.dataset`` for a clone of ``clean``; the quarantine records where it came from.

    Only a resumed swap lists the datasets again: one that just made a change
    knows what it made (every ``zfs`` process is a slow step on the guest)."""
    present = filesystems(client, names.dataset)
    renamed_now = names.quarantine not in present
    if renamed_now:
        before = rows_of(client, [names.dataset], list(_BEFORE_SWAP))
        now = {prop: row["value"] for (_, prop), row in before.items()}
        refuse_running_root(names.dataset, now)
        if names.clone not in present:
            client.clone(names.clone, clean, _serving_props(client, names.dataset, before))
            client.promote(names.clone)  # a clone made now is promoted now
        elif is_clone(present[names.clone]):
            client.promote(names.clone)
        canmount = now["canmount"]
        client.rename(names.dataset, names.quarantine)
    else:
        canmount = _canmount_before_seal(client, names.quarantine)
    # sealed again after a resume: the rename below may have been done
    client.set(names.quarantine, {**SEALED, CANMOUNT_KEPT: _canmount(canmount), RESTORED_FROM: clean})
    if renamed_now or names.clone in filesystems(client, names.dataset):
        client.rename(names.clone, names.dataset)
    _take_place(client, names.dataset, names.quarantine)


def _serving_props(client: AgentClient, dataset: str, before: dict[tuple[str, str], dict[str, str]]) -> dict[str, str]:
    """What :func:`_take_place` would set on the clone once it has the dataset's name, given to the
    clone as it is made: a ``canmount`` other than ``on`` (a boot environment's ``noauto``) and a
    mountpoint set on the dataset itself. Each ``zfs set`` is a process and a transaction group on a
    slow guest; a property of the clone's creation costs neither, and nothing mounts it."""
    served: dict[str, str] = {}
    canmount = _canmount(before[dataset, "canmount"]["value"])
    if canmount != "on":
        served["canmount"] = canmount
    mountpoint = before[dataset, "mountpoint"]
    if mountpoint["source"] == "local":
        served["mountpoint"] = host_mountpoint(mountpoint["value"], client.altroot(dataset.split("/", 1)[0]))
    return served


def restored(client: AgentClient, names: SwapNames) -> bool:
    present = filesystems(client, names.dataset)
    if names.quarantine not in present or names.dataset not in present or names.clone in present:
        return False
    sealed = props(client, names.quarantine, list(SEALED)) == SEALED
    return sealed and _in_place(client, names.dataset, names.quarantine)


def present(client: AgentClient, names: SwapNames) -> list[str]:
    """The names of a swap that exist now: the dataset's, and after a crash in the middle of the swap
    its quarantine or clone (the dataset's own name may then be free)."""
    found = filesystems(client, names.dataset)
    return [name for name in (names.dataset, names.quarantine, names.clone) if name in found]


def undo(client: AgentClient, names: SwapNames) -> None:
    present = filesystems(client, names.dataset)
    if names.restored_aside not in present:
        now = props(client, names.dataset, list(_BEFORE_SWAP))
        refuse_running_root(names.dataset, now)
        _keep_canmount(client, names.dataset, now["canmount"])
        client.rename(names.dataset, names.restored_aside)
    client.set(names.restored_aside, SEALED)
    if names.quarantine in filesystems(client, names.dataset):
        kept = _canmount(props(client, names.quarantine, [CANMOUNT_KEPT]).get(CANMOUNT_KEPT))
        client.set(names.quarantine, {"readonly": "off", "canmount": kept})
        client.rename(names.quarantine, names.dataset)
    _take_place(client, names.dataset, names.restored_aside)


def undone(client: AgentClient, names: SwapNames) -> bool:
    present = filesystems(client, names.dataset)
    return (names.restored_aside in present and names.quarantine not in present
            and _in_place(client, names.dataset, names.restored_aside))


def refuse_running_root(dataset: str, now: dict[str, str]) -> None:
    """A dataset mounted at / outside an altroot is what the system runs on: never swap it there."""
    if now.get("mountpoint") == "/" and now.get("mounted") == "yes":
        raise RunningRoot(f"{dataset} is the running system's root: a boot environment is restored from the "
                          "rescue boot (boot_single mode = \"rescue\"), never under the system it replaces")


def _canmount(kept: str | None) -> str:
    """The ``canmount`` a sealed dataset had (``on`` when nothing was kept)."""
    return kept if kept in ("on", "noauto") else "on"


def _canmount_before_seal(client: AgentClient, quarantine: str) -> str:
    """What ``canmount`` the quarantine had before it was sealed: the seal keeps it in the same
    ``zfs set``, so a quarantine without it is not sealed yet and still has its own."""
    now = props(client, quarantine, ["canmount", CANMOUNT_KEPT])
    kept = now.get(CANMOUNT_KEPT)
    return kept if kept in ("on", "noauto") else now["canmount"]


def _keep_canmount(client: AgentClient, dataset: str, canmount: str) -> None:
    client.set(dataset, {CANMOUNT_KEPT: _canmount(canmount)})


def _take_place(client: AgentClient, dataset: str, previous: str) -> None:
    """``dataset`` serves where ``previous`` served: mountpoint, canmount, the pool's boot
    environment, mounted unless it mounts only on demand.

    ``canmount`` is set before the mountpoint: a boot environment given
    ``mountpoint=/`` while it may still mount by itself would be mounted at once.
    """
    rows = rows_of(client, [dataset, previous], ["canmount", "mountpoint", CANMOUNT_KEPT])
    canmount = _canmount(rows.get((previous, CANMOUNT_KEPT), {}).get("value"))  # unset: no row, or "-"
    if canmount != "on" and rows[dataset, "canmount"]["value"] != canmount:
        client.set(dataset, {"canmount": canmount})
    pool = client.pool(dataset.split("/", 1)[0])
    served = rows[previous, "mountpoint"]
    if served["source"] == "local" and rows[dataset, "mountpoint"]["value"] != served["value"]:
        client.set(dataset, {"mountpoint": host_mountpoint(served["value"], pool.altroot)})
    if pool.bootfs == previous:
        client.set_bootfs(pool.name, dataset)
    if _mounts_itself(canmount, pool) and props(client, dataset, ["mounted"])["mounted"] != "yes":
        client.mount(dataset)


def host_mountpoint(shown: str, altroot: str | None) -> str:
    """The mountpoint as the host stores it: under an altroot ``zfs get`` shows it below the altroot,
    and ``zfs set`` takes it without (setting what was shown would nest it below the altroot twice)."""
    if not altroot or altroot == "/" or not shown.startswith("/"):
        return shown
    root = altroot.rstrip("/")
    if shown == root:
        return "/"
    return shown[len(root):] if shown.startswith(root + "/") else shown


def _in_place(client: AgentClient, dataset: str, previous: str) -> bool:
    """Whether :func:`_take_place` is done: a crash between the rename and its last ``zfs set`` leaves
    a dataset with the right name that would mount elsewhere, or not at all."""
    pool = client.pool(dataset.split("/", 1)[0])
    if pool.bootfs == previous:
        return False
    rows = rows_of(client, [dataset, previous], ["mounted", "canmount", "mountpoint", CANMOUNT_KEPT])
    canmount = _canmount(rows.get((previous, CANMOUNT_KEPT), {}).get("value"))
    if canmount != "on" and rows[dataset, "canmount"]["value"] != canmount:
        return False
    served = rows[previous, "mountpoint"]
    if served["source"] == "local" and rows[dataset, "mountpoint"]["value"] != served["value"]:
        return False
    if rows.get((dataset, "mounted"), {}).get("value") == "yes":
        return True
    return not _mounts_itself(canmount, pool)


def _mounts_itself(canmount: str, pool: PoolState) -> bool:
    """Whether the swap mounts the dataset: not a boot environment (mounted by the initramfs that
    boots it), and not under the rescue system's altroot (its caller mounts for inspection, parents
    first, so no mount hides another)."""
    return canmount == "on" and pool.altroot in (None, "/")


def filesystems(client: AgentClient, dataset: str) -> dict[str, Dataset]:
    """The filesystems beside ``dataset`` (its parent's children), by name."""
    parent = dataset.rsplit("/", 1)[0]
    return {d.name: d for d in client.list_datasets(parent, types=("filesystem",))}


def is_clone(row: Dataset) -> bool:
    return row.origin not in (None, "", "-")


def props(client: AgentClient, dataset: str, names: list[str]) -> dict[str, str]:
    return {row["property"]: row["value"] for row in client.get([dataset], names)}


def rows_of(client: AgentClient, datasets: list[str], names: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """``zfs get`` rows of several datasets in one request, by (dataset, property)."""
    return {(row["name"], row["property"]): row for row in client.get(datasets, names)}
