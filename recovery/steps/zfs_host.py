"""What the ZFS steps share: the agent on the host, its protected datasets, snapshot names.

Snapshot names carry their meaning: ``@golden-<UTC>`` (known good, captured by
`recover golden`), ``@incident-<run>`` (evidence of this run). The restored
dataset takes the service name; the compromised one is kept as
``<name>.quarantine-<run>``. Nothing here destroys a dataset or a snapshot.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from recovery.engine.registry import StepContext, StepFailed
from recovery.zfs.client import AgentClient, AgentError, AgentReplyError, Dataset, snapshot_view
from recovery.zfs.diff import Change, ChangeKind
from recovery.zfs.pipeline import side_by_side
from recovery.zfs.swap import SwapNames
from recovery.zfs.triage import DEFAULT_RULES, Finding, Verdict, compares_older, triage

#: Rules that a Debian package's own files trip when dpkg installs or upgrades them.
SHIPPED_RULES = frozenset({"setuid-file", "system-binary", "kernel-module", "scheduled-jobs"})
GOLDEN_PREFIX = "golden-"
GOLDEN_HOLD = "recovery-golden"
EVIDENCE_HOLD = "recovery-evidence"

_R = TypeVar("_R")


def agent(ctx: StepContext) -> AgentClient:
    return AgentClient(ctx.here.session(), timeout=ctx.timeout, served=True)


def protected(ctx: StepContext) -> list[str]:
    datasets = ctx.inventory.hosts[ctx.host].datasets if ctx.host else []
    if not datasets:
        raise StepFailed(f"{ctx.host}: no protected datasets in the inventory (hosts.{ctx.host}.datasets)")
    return list(datasets)


def each_dataset(work: Callable[[str], _R], datasets: Sequence[str]) -> dict[str, _R]:
    """``work`` on every dataset side by side, by dataset: their agent calls share round trips, and
    the agent runs them at once (the diffs, searches and swaps of different datasets overlap).

    Datasets nested in one another are worked on one after another: a rename
    or mount of one moves or hides the other.
    """
    if any(a != b and b.startswith(a + "/") for a in datasets for b in datasets):
        return {dataset: work(dataset) for dataset in datasets}
    return dict(zip(datasets, side_by_side(work, datasets)))


def incident_snapshot(ctx: StepContext, dataset: str) -> str:
    return f"{dataset}@incident-{ctx.run_id}"


def swap_names(ctx: StepContext, dataset: str) -> SwapNames:
    return SwapNames.for_run(dataset, ctx.run_id)


def snapshots(client: AgentClient, dataset: str) -> list[Dataset]:
    """The dataset's own snapshots, oldest first (by creation transaction group)."""
    rows = client.list_datasets(dataset, types=("snapshot",))
    own = [r for r in rows if r.name.split("@", 1)[0] == dataset]
    return sorted(own, key=lambda r: r.createtxg)


@dataclasses.dataclass(frozen=True)
class Listing:
    """The filesystems and snapshots of the pools that hold some datasets, from one ``zfs list`` per
    pool (listed side by side): what a step asks about many datasets costs one process per pool,
    where a listing per dataset and question cost a ``zfs`` process each."""

    rows: tuple[Dataset, ...]

    @classmethod
    def of(cls, client: AgentClient, datasets: Sequence[str]) -> Listing:
        pools = sorted({dataset.split("/", 1)[0] for dataset in datasets})
        found = side_by_side(lambda pool: client.list_datasets(pool, types=("filesystem", "snapshot")), pools)
        return cls(tuple(row for rows in found for row in rows))

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return frozenset(row.name for row in self.rows)

    def snapshots(self, dataset: str) -> list[Dataset]:
        """The dataset's own snapshots, oldest first (by creation transaction group)."""
        return sorted((r for r in self.rows if r.name.split("@", 1)[0] == dataset and "@" in r.name),
                      key=lambda r: r.createtxg)


def golden_in(history: list[Dataset], dataset: str) -> Dataset:
    """The newest ``@golden-*`` of the dataset's snapshots (oldest first), which a step listed already."""
    goldens = [s for s in history if short(s.name).startswith(GOLDEN_PREFIX)]
    if not goldens:
        raise StepFailed(f"{dataset}: no @{GOLDEN_PREFIX}* snapshot: capture one with `recover golden` "
                         "before a host goes live")
    return goldens[-1]


def short(snapshot: str) -> str:
    return snapshot.split("@", 1)[1]


def triaged(client: AgentClient, origin: str, target: str, rules: Any = None,
            known: SnapshotsOf | None = None) -> list[Finding]:
    """``zfs diff`` origin -> target, parsed and classified (see :class:`DatasetTriage`)."""
    return DatasetTriage.of(client, origin.split("@", 1)[0], rules, known).between(origin, target)


@dataclasses.dataclass(frozen=True)
class SnapshotsOf:
    """Which host a step works on, through which channel, and the snapshots its listing saw, by
    guid: what lets a triaged diff of two snapshots be reused (see :data:`_TRIAGED`). The channel
    is part of it: what the host's own tools said is never taken for what the rescue image's did."""

    where: str
    guids: dict[str, int]
    mountpoints: dict[str, str | None] = dataclasses.field(default_factory=dict)  # the listing's filesystems

    @classmethod
    def listed(cls, ctx: StepContext, listing: Listing) -> SnapshotsOf:
        return cls(f"{ctx.host} over {ctx.here.channel.value}",
                   {row.name: row.guid for row in listing.rows if "@" in row.name},
                   {row.name: row.mountpoint for row in listing.rows if "@" not in row.name})


#: Triaged diffs of two snapshots made in this process, by host and channel, the snapshots' guids, the
#: rules and where the dataset is seen. Snapshots do not change, so `find_clean` reuses what `diff` triaged
#: (golden -> incident) instead of asking the host again: each ``zfs diff`` costs the guest a process
#: that slows every other step's. Guids, not names: a destroyed name can be taken again, a guid not.
#: A diff still being made is kept too (a future): who asks for it then waits for it, not asks again.
_TRIAGED: collections.OrderedDict[tuple[Any, ...], Future[tuple[Finding, ...]]] = collections.OrderedDict()
_TRIAGED_KEPT = 64
_TRIAGED_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class DatasetTriage:
    """The triage of one dataset's diffs: its mountpoint and its pool's altroot are asked once,
    for all the diffs a step makes of it (a search makes several)."""

    client: AgentClient
    rules: tuple[Any, ...]
    mountpoint: bytes | None
    prefix: bytes  # the altroot the pool is imported under, b"" when none
    known: SnapshotsOf | None = None

    @classmethod
    def of(cls, client: AgentClient, dataset: str, rules: Any = None,
           known: SnapshotsOf | None = None) -> DatasetTriage:
        altroot = client.altroot(dataset.split("/", 1)[0])
        prefix = altroot.rstrip("/").encode("utf-8", "surrogateescape") if altroot else b""
        listed = known is not None and dataset in known.mountpoints
        mountpoint = _mounted_at(known.mountpoints[dataset]) if listed else _mountpoint(client, dataset)
        return cls(client, DEFAULT_RULES if rules is None else tuple(rules), mountpoint, prefix, known)

    def between(self, origin: str, target: str) -> list[Finding]:
        """The triaged diff, reused when this process triaged (or is triaging) the same two snapshots."""
        key = self._key(origin, target)
        if key is None:
            return self._triage(origin, target)
        with _TRIAGED_LOCK:
            made = _TRIAGED.get(key)
            if made is None:
                made = _TRIAGED[key] = Future()
                while len(_TRIAGED) > _TRIAGED_KEPT:
                    _TRIAGED.popitem(last=False)
                mine = True
            else:
                mine = False
        if mine:
            self._make(key, made, origin, target)
        return list(made.result())

    def ahead(self, origin: str, target: str) -> threading.Thread | None:
        """Start triaging origin -> target in a thread, for a :meth:`between` asked later; join it.
        Its failure is raised by that :meth:`between` (by none when nobody asks). None: the two
        snapshots are not known by guid, so nothing made ahead could be found again."""
        if self._key(origin, target) is None:
            return None
        thread = threading.Thread(target=self._quietly, args=(origin, target), name=f"triage {target}", daemon=True)
        thread.start()
        return thread

    def _quietly(self, origin: str, target: str) -> None:
        with suppress(Exception):
            self.between(origin, target)

    def _make(self, key: tuple[Any, ...], made: Future[tuple[Finding, ...]], origin: str, target: str) -> None:
        """Triage into ``made``; a failure is not kept: the next to ask tries again."""
        try:
            findings = tuple(self._triage(origin, target))
        except Exception as exc:  # noqa: BLE001 - raised again by made.result(), to each who asks
            with _TRIAGED_LOCK:
                if _TRIAGED.get(key) is made:
                    del _TRIAGED[key]
            made.set_exception(exc)
        else:
            made.set_result(findings)

    def _key(self, origin: str, target: str) -> tuple[Any, ...] | None:
        if self.known is None or origin not in self.known.guids or target not in self.known.guids:
            return None
        return (self.known.where, self.known.guids[origin], self.known.guids[target], self.rules,
                self.mountpoint, self.prefix)

    def _triage(self, origin: str, target: str) -> list[Finding]:
        """The diff, with the modes the target holds and whether its logs only grew.

        A line that does not parse is a change nobody can classify: the whole diff
        is refused (fail closed) rather than judged without it. A real ``zfs diff``
        escapes every name, so only a lying tool prints such lines.
        """
        client, mountpoint, prefix, rules = self.client, self.mountpoint, self.prefix, self.rules
        result = client.diff_changes(origin, target)
        if result.malformed_count:
            first = result.malformed[0]
            raise AgentReplyError(f"zfs diff {origin} -> {target}: {result.malformed_count} lines do not parse "
                                  f"(first, line {first.line_no}: {first.reason}: {first.excerpt}); refusing to "
                                  "triage a diff in part")
        unlinked = [c for c in result.changes if unlinked_while_open(c, mountpoint)]
        if unlinked and "@" not in target:
            raise AgentReplyError(f"zfs diff {origin} -> {target}: {len(unlinked)} files unlinked but still held "
                                  "open by a running process: a look at the live system cannot tell what they are")
        changes = [c for c in result.changes if not unlinked_while_open(c, mountpoint)]
        seen = [as_host_sees_it(c, prefix) for c in changes] if prefix else changes
        written = [c.current_path for c in changes if c.kind is not ChangeKind.REMOVED]
        modes = _modes(client, target, mountpoint, written)
        compared = [raw.current_path for raw, change in zip(changes, seen) if compares_older(change, rules)]
        rewritten = _rewritten(client, origin, target, mountpoint, compared)
        findings = triage(seen, rules, {host_path(p, prefix): m for p, m in modes.items()},
                          rewritten=[host_path(p, prefix) for p in rewritten])
        return as_shipped(client, mountpoint, target, findings, prefix) + [
            Finding(c, Verdict.SUSPICIOUS, "unlinked-open", UNLINKED_REASON) for c in unlinked]


#: How ``zfs diff`` names a file unlinked while still open (on the delete queue): its name is gone,
#: so the dataset's mountpoint is printed with this right after it, without a slash.
DELETE_QUEUE = b"(on_delete_queue)"
UNLINKED_REASON = ("a file unlinked while still open when the system stopped: it has no name, the evidence "
                   "snapshot holds it and the next read-write mount frees it")


def unlinked_while_open(change: Change, mountpoint: bytes | None) -> bool:
    """Whether ``zfs diff`` printed this change as a delete-queue entry of the dataset at ``mountpoint``.

    A host powered off by force leaves them (a log a daemon had open), and a read-only mount keeps
    them. No file under the mountpoint has this path: it is beside the mount, not in it. On a live
    system one is held open by a running process (a deleted binary still running), which a diff
    cannot judge: that diff is refused, as before, now with a reason.
    """
    return mountpoint is not None and change.current_path == mountpoint.rstrip(b"/") + DELETE_QUEUE


def as_shipped(client: AgentClient, mountpoint: bytes | None, target: str, findings: list[Finding],
               altroot: bytes) -> list[Finding]:
    """Package churn is not an attack: a system file that is exactly what its Debian package ships,
    by the dpkg database of the same state, is churn (a dpkg run between the two states).

    Only a dataset mounted at the system's root holds that database; an
    intruder's change to a packaged file does not match its recorded md5, and
    files no package ships (a new "telnetd") stay indicators.
    """
    suspects = [f.path for f in findings if f.verdict is Verdict.INDICATOR and f.rule in SHIPPED_RULES]
    if not suspects or mountpoint is None or mountpoint.rstrip(b"/") != altroot:
        return findings
    root = mountpoint if "@" not in target else snapshot_view(mountpoint, target, mountpoint)
    shipped = client.shipped(root, suspects)
    return [dataclasses.replace(f, verdict=Verdict.CHURN, rule="package", reason="as its Debian package ships "
                                "it (dpkg database of the same state): a package was installed or upgraded")
            if shipped.get(f.path) else f for f in findings]


def host_path(path: bytes, altroot: bytes) -> bytes:
    """A path as the host itself names it: a pool imported under an altroot (the rescue system's
    ``/mnt/host``) prints every path below it, and the rules speak of ``/etc/cron.d``, not of it."""
    if path == altroot:
        return b"/"
    return path[len(altroot):] if path.startswith(altroot + b"/") else path


def as_host_sees_it(change: Change, altroot: bytes) -> Change:
    new_path = host_path(change.new_path, altroot) if change.new_path is not None else None
    return dataclasses.replace(change, path=host_path(change.path, altroot), new_path=new_path)


def _modes(client: AgentClient, target: str, mountpoint: bytes | None, paths: list[bytes]) -> dict[bytes, int]:
    """Modes of the changed paths in ``target``: inside a snapshot, or as they are now for a
    live file system (the sweep), whose changed paths are where ``zfs diff`` names them."""
    if "@" not in target:
        return client.modes(paths)
    return client.modes_in_snapshot(mountpoint, target, paths) if mountpoint else {}


def _rewritten(client: AgentClient, origin: str, target: str, mountpoint: bytes | None,
               paths: list[bytes]) -> list[bytes]:
    """Those of ``paths`` (modified files, as the diff names them) that do not start in ``target``
    with what they held in ``origin``."""
    if not paths or mountpoint is None:
        return []
    older = [snapshot_view(mountpoint, origin, p) for p in paths]
    newer = [snapshot_view(mountpoint, target, p) if "@" in target else p for p in paths]
    appended = client.appended(list(zip(older, newer)))
    return [path for path, grew in zip(paths, appended) if grew is False]


def _mountpoint(client: AgentClient, dataset: str) -> bytes | None:
    values = client.get([dataset], ["mountpoint"])
    return _mounted_at(values[0]["value"] if values else None)


def _mounted_at(value: str | None) -> bytes | None:
    """A mountpoint as ``zfs`` shows it, as a path; None for ``none``, ``legacy`` or unknown."""
    return value.encode("utf-8", "surrogateescape") if value and value.startswith("/") else None


@contextmanager
def agent_errors(host: str | None, action: str) -> Iterator[None]:
    """Agent failures become step failures that name the host and what was being done."""
    try:
        yield
    except (AgentError, AgentReplyError) as exc:
        raise StepFailed(f"{host}: {action}: {exc}") from None


#: The temporary properties a mount for inspection gives (``ro,nosuid,nodev,noexec``), as ``zfs get``
#: shows them while it lasts.
INSPECTED = {"readonly": "on", "setuid": "off", "devices": "off", "exec": "off"}


def release_mounts(client: AgentClient, datasets: list[str]) -> None:
    """Unmount the datasets, deepest first: under the rescue altroot they nest (the boot environment
    holds every other mountpoint), and a swap cannot rename or seal one with a mount beneath it."""
    _release(client, _mountable(client, datasets))


def inspection_mounts(client: AgentClient, datasets: list[str]) -> None:
    """Mount the datasets to be read (read-only, nosuid, nodev, noexec), parents first, after
    unmounting them all: a parent mounted after its child would hide it.

    Left as they are when every one is mounted for inspection already (`restore`
    leaves them so for `verify`): each ``zfs`` process is a slow step on the guest."""
    mountable = _mountable(client, datasets)
    if mountable and all(state.get("mounted") == "yes" and all(state.get(p) == v for p, v in INSPECTED.items())
                         for state in mountable.values()):
        return
    _release(client, mountable)
    for layer in nested_layers({d: state["mountpoint"] for d, state in mountable.items()}):
        side_by_side(lambda dataset: client.mount(dataset, inspect=True), layer)


def _release(client: AgentClient, mountable: dict[str, dict[str, str]]) -> None:
    mounted = {d: state["mountpoint"] for d, state in mountable.items() if state.get("mounted") == "yes"}
    for layer in reversed(nested_layers(mounted)):
        side_by_side(client.unmount, layer)


def nested_layers(mountpoints: dict[str, str]) -> list[list[str]]:
    """The datasets by how deep their mountpoints nest among these, outermost first: the mounts of
    one layer neither hide nor hold one another, so they are made (or undone) side by side.
    Two datasets with one mountpoint are made one after another, in the order of their paths."""
    def at_or_below(inner: str, outer: str) -> bool:
        return inner == outer or inner.startswith(outer.rstrip("/") + "/")

    ordered = sorted(mountpoints, key=lambda d: (mountpoints[d], d))
    depth: dict[str, int] = {}
    for dataset in ordered:  # a mountpoint sorts after every mountpoint that holds it
        below = [depth[o] + 1 for o in depth if at_or_below(mountpoints[dataset], mountpoints[o])]
        depth[dataset] = max(below, default=0)
    return [[d for d in ordered if depth[d] == level] for level in range(max(depth.values(), default=-1) + 1)]


def _mountable(client: AgentClient, datasets: list[str]) -> dict[str, dict[str, str]]:
    """The datasets that can mount, by name, with their mountpoint, whether mounted, and how."""
    values: dict[str, dict[str, str]] = {}
    for row in client.get(datasets, ["mountpoint", "mounted", "canmount", *INSPECTED]):
        values.setdefault(row["name"], {})[row["property"]] = row["value"]
    return {d: v for d, v in values.items()
            if v.get("mountpoint", "").startswith("/") and v.get("canmount") != "off"}
