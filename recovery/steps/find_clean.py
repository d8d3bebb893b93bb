"""`find_clean`: the newest snapshot after golden whose diff from golden holds no indicator.

Bisection over the snapshots between golden and the incident (O(log n) diffs;
the monotonic assumption and its checks are in :mod:`recovery.zfs.find_clean`),
whose first round looks where the change times of the incident's indicators
say the history turns dirty: one round of two diffs when they say true.
A history that breaks the assumption stops this host: a person decides.
Also reports what restoring the clean snapshot gives up (changes made since).
"""

from __future__ import annotations

from collections.abc import Sequence
from threading import Thread
from typing import Any

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.diff import LISTED, Change, describe
from recovery.steps.triage_rules import TriageParams
from recovery.steps.zfs_host import (
    DatasetTriage,
    Listing,
    SnapshotsOf,
    agent,
    agent_errors,
    each_dataset,
    golden_in,
    incident_snapshot,
    protected,
)
from recovery.zfs.diff import ChangeKind
from recovery.zfs.find_clean import (
    NonMonotonicHistory,
    find_newest_clean,
    likely_first_dirty,
    lost_on_restore,
)
from recovery.zfs.pipeline import side_by_side
from recovery.zfs.triage import indicators


class FindCleanParams(TriageParams):
    exhaustive: bool = Field(False, description="Diff every snapshot instead of bisecting (proves the history).")
    probes: int = Field(2, ge=1, le=8, description=(
        "Snapshots a search round diffs side by side. k probes need log_(k+1)(n + 1) rounds for n snapshots "
        "instead of log_2(n + 1), for up to k diffs a round: 2 rounds instead of 3 for 6 to 8 snapshots, "
        "6 instead of 9 for 256. 1 is plain bisection, the fewest diffs."))


class Lost(Strict):
    """What restoring the clean snapshot gives up: changes made after it."""

    benign: list[Change] = Field(default_factory=list)
    suspicious: list[Change] = Field(default_factory=list)
    churn: int = 0


class CleanChoice(Strict):
    clean: str | None  # None: nothing to restore (no indicator since golden)
    golden: str
    examined: int = 0
    status: str | None = None
    candidates: int = 0
    first_dirty: str | None = None
    lost: Lost | None = None


class FindCleanOutputs(StepOutputs):
    datasets: dict[str, CleanChoice] = Field(default_factory=dict)


@register
class FindCleanStep(StepKind):
    kind = "find_clean"
    summary = "find the newest snapshot without indicators (bisection)"
    Params = FindCleanParams
    Outputs = FindCleanOutputs
    needs = ("preserve",)  # it searches up to the evidence snapshot
    repeatable = True  # read-only

    def apply(self, ctx: StepContext) -> FindCleanOutputs:
        client = agent(ctx)
        with agent_errors(ctx.host, "listing snapshots"):
            listing = Listing.of(client, protected(ctx))
        known = SnapshotsOf.listed(ctx, listing)

        def searched(dataset: str) -> CleanChoice:
            with agent_errors(ctx.host, f"searching {dataset}"):
                return self._search(ctx, client, listing, known, dataset)

        return FindCleanOutputs(datasets=each_dataset(searched, protected(ctx)))

    def _search(self, ctx: StepContext, client: Any, listing: Listing, known: SnapshotsOf,
                dataset: str) -> CleanChoice:
        history = listing.snapshots(dataset)
        golden = golden_in(history, dataset)
        incident = incident_snapshot(ctx, dataset)
        if incident not in {s.name for s in history}:
            raise StepFailed(f"{ctx.host}: {incident} is missing: run `preserve` first")
        incident_txg = next(s.createtxg for s in history if s.name == incident)
        made = [s for s in history if golden.createtxg < s.createtxg < incident_txg]
        between = [s.name for s in made]
        diffs = DatasetTriage.of(client, dataset, ctx.params.compiled(), known)
        at_incident = indicators(diffs.between(golden.name, incident))
        if not at_incident:
            ctx.note(f"{dataset}: no indicator since {golden.name}: nothing to restore")
            return CleanChoice(clean=None, golden=golden.name)
        ahead: list[Thread] = []

        def losing(candidates: Sequence[str]) -> None:
            """What restoring gives up, triaged beside the round that picks which of these is clean."""
            ahead.extend(thread for thread in (diffs.ahead(c, incident) for c in candidates) if thread)

        # a removal's time is the removed file's, not the removal's: it says nothing of when
        hint = likely_first_dirty([s.creation for s in made],
                                  (f.change.ctime for f in at_incident if f.change.kind is not ChangeKind.REMOVED))
        try:
            search = find_newest_clean(
                golden.name, between, lambda snap: indicators(diffs.between(golden.name, snap)),
                incident=at_incident, exhaustive=ctx.params.exhaustive, probes=ctx.params.probes,
                side_by_side=side_by_side, last_round=losing, hint=hint)
            try:
                clean = search.require_trustworthy()
            except NonMonotonicHistory as exc:
                raise StepFailed(f"{ctx.host}: {dataset}: the snapshot history is not monotonic, "
                                 f"refusing to choose automatically: {exc}") from None
            lost = lost_on_restore(diffs.between(clean, incident))
        finally:
            for thread in ahead:  # nothing of this step's is left asking the host when the next begins
                thread.join()
        ctx.note(f"{dataset}: newest clean is {clean} ({search.diff_calls} diffs over "
                 f"{len(between)} snapshots); restoring it gives up {lost.count} later changes")
        return CleanChoice(
            clean=clean, golden=golden.name, status=search.status.value,
            examined=search.diff_calls, candidates=len(between), first_dirty=search.successor or incident,
            lost=Lost(benign=[describe(f) for f in lost.benign[:LISTED]],
                      suspicious=[describe(f) for f in lost.suspicious[:LISTED]], churn=len(lost.churn)))
