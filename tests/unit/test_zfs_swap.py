"""The swap of a dataset for its restored clone, on a small model of ZFS: data datasets and boot
environments, every crash point resumed, and the running root refused.

The model keeps what the swap relies on: a rename keeps a dataset's own
properties, ``bootfs`` follows the dataset object it names across renames,
a clone does not copy its origin's local properties, and sealing unmounts.
The same flows run against real OpenZFS in tests/lab/test_zfs_recovery.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from recovery.steps.zfs_host import INSPECTED, inspection_mounts, nested_layers, release_mounts
from recovery.zfs import swap
from recovery.zfs.client import Dataset, PoolState
from recovery.zfs.swap import SwapNames

_ids = itertools.count(1)


class Crash(Exception):
    pass


class FakeZfs:
    """Filesystems as objects with local properties; ``bootfs`` holds an object, not a name."""

    def __init__(self, altroot: str | None = None, crash_after: int | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.bootfs: int | None = None
        self.imported_at = altroot
        self.calls = 0
        self.crash_after = crash_after
        self.sets: list[tuple[str, dict[str, str]]] = []

    def add(self, name: str, **props: str) -> None:
        self.objects[name] = {"id": next(_ids), "origin": None, "mounted": "no", **props}

    def _step(self) -> None:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Crash(f"killed after {self.crash_after} changes")

    def list_datasets(self, root: str, types: tuple[str, ...]) -> list[Dataset]:
        return [Dataset(n, "filesystem", o["id"], 1, 0, 0, o["origin"], o.get("mountpoint"))
                for n, o in self.objects.items() if n.startswith(root + "/")]

    def clone(self, name: str, origin: str, props: dict[str, str] | None = None) -> None:
        """Made unmounted, its ``props`` local from the start (lzc_clone sets them in one transaction)."""
        self._step()
        self.objects[name] = {"id": next(_ids), "origin": origin, "mounted": "no", **(props or {})}

    def promote(self, name: str) -> None:
        self._step()
        self.objects[name]["origin"] = None

    def rename(self, source: str, target: str) -> None:
        self._step()
        self.objects[target] = self.objects.pop(source)

    def mount(self, name: str, inspect: bool = False) -> None:
        """``inspect`` shows as the temporary properties of ``ro,nosuid,nodev,noexec`` while mounted."""
        self._step()
        self.objects[name].update(mounted="yes", inspected=inspect)

    def unmount(self, name: str) -> None:
        self._step()
        self.objects[name].update(mounted="no", inspected=False)

    def set(self, dataset: str, properties: dict[str, str]) -> None:
        self._step()
        self.sets.append((dataset, dict(properties)))
        obj = self.objects[dataset]
        obj.update(properties)
        if properties.get("canmount") == "off":
            obj["mounted"] = "no"

    def get(self, datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
        """Values as ``zfs get`` shows them: a mountpoint below the pool's altroot."""
        return [{"name": name, "property": p, "value": self._shown(p, self._value(obj, p)),
                 "source": "local" if p in obj else "default"}
                for name, obj in ((name, self.objects[name]) for name in datasets) for p in properties]

    def _value(self, obj: dict[str, Any], prop: str) -> str:
        if obj.get("inspected") and prop in INSPECTED:
            return INSPECTED[prop]
        defaults = {"readonly": "off", "canmount": "on", "mountpoint": "none", "setuid": "on", "exec": "on",
                    "devices": "on"}
        return str(obj.get(prop, defaults.get(prop, "-")))

    def _shown(self, prop: str, value: str) -> str:
        if prop != "mountpoint" or not self.imported_at or not value.startswith("/"):
            return value
        return self.imported_at.rstrip("/") + (value if value != "/" else "")

    def pool(self, pool: str) -> PoolState:
        name = next((n for n, o in self.objects.items() if o["id"] == self.bootfs), None)
        return PoolState(pool, name, self.imported_at)

    def altroot(self, pool: str) -> str | None:
        return self.imported_at

    def set_bootfs(self, pool: str, dataset: str) -> None:
        self._step()
        self.bootfs = self.objects[dataset]["id"]

    def prop(self, name: str, key: str) -> str:
        return self.get([name], [key])[0]["value"]


BE = "rpool/ROOT/debian"
DATA = "tank/www"


def boot_environment(altroot: str | None = "/mnt/host") -> FakeZfs:
    zfs = FakeZfs(altroot=altroot)
    zfs.add(BE, canmount="noauto", mountpoint="/")
    zfs.bootfs = zfs.objects[BE]["id"]
    return zfs


def data_dataset() -> FakeZfs:
    zfs = FakeZfs()
    zfs.add(DATA, mountpoint="/srv/www", mounted="yes")
    return zfs


def test_a_boot_environment_is_restored_and_the_pool_boots_it() -> None:
    zfs = boot_environment()
    compromised = zfs.objects[BE]["id"]
    names = SwapNames.for_run(BE, "R1")
    swap.restore(zfs, names, f"{BE}@auto-2")  # type: ignore[arg-type]
    assert swap.restored(zfs, names)  # type: ignore[arg-type]
    assert zfs.pool("rpool").bootfs == BE and zfs.objects[BE]["id"] != compromised
    assert zfs.objects[names.quarantine]["id"] == compromised
    assert (zfs.prop(names.quarantine, "readonly"), zfs.prop(names.quarantine, "canmount")) == ("on", "off")
    assert (zfs.prop(BE, "canmount"), zfs.objects[BE]["mountpoint"], zfs.prop(BE, "mounted")) == ("noauto", "/", "no")
    assert zfs.prop(names.quarantine, swap.RESTORED_FROM) == f"{BE}@auto-2"


def test_undo_boots_the_quarantined_environment_again_as_it_was() -> None:
    zfs = boot_environment()
    compromised = zfs.objects[BE]["id"]
    names = SwapNames.for_run(BE, "R1")
    swap.restore(zfs, names, f"{BE}@auto-2")  # type: ignore[arg-type]
    swap.undo(zfs, names)  # type: ignore[arg-type]
    assert swap.undone(zfs, names)  # type: ignore[arg-type]
    assert zfs.objects[BE]["id"] == compromised and zfs.pool("rpool").bootfs == BE
    assert (zfs.prop(BE, "readonly"), zfs.prop(BE, "canmount")) == ("off", "noauto")
    assert zfs.prop(names.restored_aside, "canmount") == "off"


def rescued_data() -> FakeZfs:
    zfs = FakeZfs(altroot="/mnt/host")
    zfs.add(DATA, mountpoint="/srv/www")
    return zfs


def crashed_then_resumed(zfs: FakeZfs, dataset: str, crash_after: int) -> SwapNames:
    """A restore killed after ``crash_after`` changes (never taken for done), then run again."""
    zfs.crash_after = crash_after
    names = SwapNames.for_run(dataset, "R1")
    try:
        swap.restore(zfs, names, f"{dataset}@auto-2")  # type: ignore[arg-type]
    except Crash:
        assert not swap.restored(zfs, names)  # type: ignore[arg-type]
    zfs.crash_after = None
    swap.restore(zfs, names, f"{dataset}@auto-2")  # type: ignore[arg-type]
    assert swap.restored(zfs, names)  # type: ignore[arg-type]
    return names


def test_the_clone_is_made_with_the_mountpoint_and_canmount_it_will_serve_with() -> None:
    """A boot environment's clone is made ``noauto`` at ``/`` and a data clone at the dataset's own
    mountpoint: no ``zfs set`` of either once it has the name (each one a process and a transaction
    group on a slow guest), and nothing mounts the clone under the rescue system's altroot."""
    for zfs, dataset in ((boot_environment(), BE), (rescued_data(), DATA)):
        names = SwapNames.for_run(dataset, "R1")
        swap.restore(zfs, names, f"{dataset}@auto-2")  # type: ignore[arg-type]
        assert swap.restored(zfs, names)  # type: ignore[arg-type]
        assert [sealed for sealed, _ in zfs.sets] == [names.quarantine]
        assert zfs.prop(dataset, "mounted") == "no"
    assert zfs.prop(DATA, "mountpoint") == "/mnt/host/srv/www"


@pytest.mark.parametrize("crash_after", range(1, 12))
def test_a_boot_environment_restore_killed_anywhere_resumes_to_the_same_end(crash_after: int) -> None:
    zfs = boot_environment()
    names = crashed_then_resumed(zfs, BE, crash_after)
    assert zfs.pool("rpool").bootfs == BE
    assert zfs.prop(BE, "canmount") == "noauto" and zfs.prop(names.quarantine, "readonly") == "on"
    assert zfs.prop(names.quarantine, swap.CANMOUNT_KEPT) == "noauto"  # undo boots it as it booted


@pytest.mark.parametrize("crash_after", range(1, 10))
def test_a_data_restore_from_the_rescue_system_killed_anywhere_resumes_to_the_same_end(crash_after: int) -> None:
    """Killed after the clone took the name but before it took the mountpoint, the swap is not done:
    taken for done, the dataset would mount nowhere and `verify` could not diff it."""
    zfs = rescued_data()
    crashed_then_resumed(zfs, DATA, crash_after)
    assert zfs.prop(DATA, "mountpoint") == "/mnt/host/srv/www"


@pytest.mark.parametrize("crash_after", range(1, 5))  # a rescue data swap makes 5 changes
def test_what_a_swap_killed_anywhere_left_can_be_unmounted_before_it_resumes(crash_after: int) -> None:
    """The rescue restore releases every mount before its swaps; after a kill in the middle of one,
    the dataset's name may be free, and asking for it alone failed the resumed run."""
    zfs = rescued_data()
    names = SwapNames.for_run(DATA, "R1")
    zfs.crash_after = crash_after
    with pytest.raises(Crash):
        swap.restore(zfs, names, f"{DATA}@auto-2")  # type: ignore[arg-type]
    zfs.crash_after = None
    held = swap.present(zfs, names)  # type: ignore[arg-type]
    assert held and set(held) <= {DATA, names.quarantine, names.clone}
    release_mounts(zfs, held)  # type: ignore[arg-type]
    assert all(zfs.prop(name, "mounted") == "no" for name in zfs.objects)
    swap.restore(zfs, names, f"{DATA}@auto-2")  # type: ignore[arg-type]
    assert swap.restored(zfs, names)  # type: ignore[arg-type]


def test_datasets_mounted_for_inspection_already_are_left_as_they_are() -> None:
    """`verify` after `restore` in the rescue system: no unmount and mount again of what is
    mounted to be read; a mount that can write or run programs is made again, parents first."""
    zfs = boot_environment()
    zfs.add(DATA, mountpoint="/srv/www")
    inspection_mounts(zfs, [DATA, BE])  # type: ignore[arg-type]
    assert zfs.prop(DATA, "readonly") == "on" and zfs.prop(BE, "exec") == "off"
    changes = zfs.calls
    inspection_mounts(zfs, [DATA, BE])  # type: ignore[arg-type]
    assert zfs.calls == changes
    zfs.objects[DATA]["inspected"] = False  # mounted writable, set-uid and exec allowed
    inspection_mounts(zfs, [DATA, BE])  # type: ignore[arg-type]
    assert zfs.calls == changes + 4 and zfs.prop(DATA, "setuid") == "off"


def test_mounts_that_nest_are_made_outermost_first_and_the_others_side_by_side() -> None:
    """Under the rescue altroot the boot environment holds every other mountpoint: it is mounted
    first (unmounted last), the data datasets beside one another; a shared mountpoint, one by one."""
    rescue = {BE: "/mnt/host", "tank/www/htdocs": "/mnt/host/srv/www/htdocs", "tank/home": "/mnt/host/home",
              "tank/www/logs": "/mnt/host/srv/www/htdocs/logs", "tank/srvx": "/mnt/hostx"}
    assert nested_layers(rescue) == [[BE, "tank/srvx"], ["tank/home", "tank/www/htdocs"], ["tank/www/logs"]]
    assert nested_layers({"a": "/srv", "b": "/srv", "c": "/srv/www"}) == [["a"], ["b"], ["c"]]
    assert nested_layers({"r": "/", "h": "/home"}) == [["r"], ["h"]] and nested_layers({}) == []


def test_a_data_dataset_is_still_restored_mounted_where_it_was() -> None:
    zfs = data_dataset()
    names = SwapNames.for_run(DATA, "R1")
    swap.restore(zfs, names, f"{DATA}@auto-2")  # type: ignore[arg-type]
    assert swap.restored(zfs, names)  # type: ignore[arg-type]
    assert (zfs.prop(DATA, "mountpoint"), zfs.prop(DATA, "mounted")) == ("/srv/www", "yes")
    assert zfs.pool("tank").bootfs is None
    swap.undo(zfs, names)  # type: ignore[arg-type]
    assert swap.undone(zfs, names) and zfs.prop(DATA, "canmount") == "on"  # type: ignore[arg-type]


def test_the_running_root_is_never_swapped_under_the_system() -> None:
    zfs = boot_environment(altroot=None)
    zfs.objects[BE]["mounted"] = "yes"
    before = {n: dict(o) for n, o in zfs.objects.items()}
    with pytest.raises(swap.RunningRoot, match="rescue boot"):
        swap.restore(zfs, SwapNames.for_run(BE, "R1"), f"{BE}@auto-2")  # type: ignore[arg-type]
    assert zfs.objects == before and zfs.calls == 0
