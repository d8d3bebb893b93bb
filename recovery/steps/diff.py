"""`diff`: what changed since the golden snapshot, triaged into indicators and the rest.

The diff runs from ``@golden-*`` to the evidence snapshot ``@incident-<run>``
(taken by `preserve`), so it describes exactly what is preserved. ``zfs diff``
sees a change by its ctime, which an attacker cannot backdate the way
``touch -d`` backdates an mtime.

Beside it, the diffs from golden that `find_clean`'s first search round will
ask for are made ahead (``search_ahead``): the search does not know which
snapshot to look at next until they are in, and a boot environment's diff
from golden takes seconds on a slow host. The step waits for them before it
ends, so nothing of it is still asking the host when the next step begins.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepKind, StepOutputs, register
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
    searched,
)
from recovery.zfs.diff import display_name
from recovery.zfs.find_clean import first_round
from recovery.zfs.triage import Finding, Verdict

#: Findings listed per dataset in the journal (counts are always complete).
LISTED = 200


class Change(Strict):
    """One triaged change, as journaled: the path is the escaped display form, never raw host bytes."""

    path: str  # escaped for display; may be cut
    path_b64: str = ""  # the exact bytes, for matching (salvage)
    change: str
    type: str
    verdict: str
    rule: str | None = None
    ctime: str = ""


class DatasetDiff(Strict):
    golden: str
    counts: dict[str, int] = Field(default_factory=dict)  # verdict -> number of changes (complete)
    findings: list[Change] = Field(default_factory=list)  # the worst, non-benign ones, at most LISTED


class DiffParams(TriageParams):
    search_ahead: int = Field(2, ge=0, le=8, description=(
        "Snapshots of find_clean's first search round diffed from golden beside this step's own diff, so "
        "the search finds them triaged: set it to find_clean's `probes` (0: none). Read-only, like the diff."))


class DiffOutputs(StepOutputs):
    datasets: dict[str, DatasetDiff] = Field(default_factory=dict)
    indicators: int = 0


@register
class DiffStep(StepKind):
    kind = "diff"
    summary = "diff @golden -> @incident and triage the changes into indicators"
    Params = DiffParams
    Outputs = DiffOutputs
    needs = ("preserve",)  # it diffs up to the evidence snapshot
    repeatable = True  # read-only: always look afresh

    def apply(self, ctx: StepContext) -> DiffOutputs:
        client, rules = agent(ctx), ctx.params.compiled()
        with agent_errors(ctx.host, "listing snapshots"):
            listing = Listing.of(client, protected(ctx))
        known = SnapshotsOf.listed(ctx, listing)

        def diffed(dataset: str) -> DatasetDiff:
            with agent_errors(ctx.host, f"diffing {dataset}"):
                history = listing.snapshots(dataset)
                golden, incident = golden_in(history, dataset), incident_snapshot(ctx, dataset)
                diffs = DatasetTriage.of(client, dataset, rules, known)
                probes = first_round(searched(history, golden, incident), ctx.params.search_ahead)
                ahead = [thread for thread in (diffs.ahead(golden.name, p) for p in probes) if thread]
                try:
                    findings = diffs.between(golden.name, incident)
                finally:
                    for thread in ahead:
                        thread.join()
            summary = summarize(golden.name, findings)
            ctx.note(f"{dataset}: {len(findings)} changes since {golden.name.split('@')[1]}, "
                     f"{summary.counts.get('indicator', 0)} indicators")
            return summary

        datasets = each_dataset(diffed, protected(ctx))
        return DiffOutputs(datasets=datasets,
                           indicators=sum(d.counts.get("indicator", 0) for d in datasets.values()))


def summarize(golden: str, findings: list[Finding]) -> DatasetDiff:
    counts = Counter(f.verdict.value for f in findings)
    worst = sorted(findings, key=lambda f: -f.verdict.severity)
    return DatasetDiff(golden=golden, counts=dict(counts),
                       findings=[describe(f) for f in worst[:LISTED] if f.verdict is not Verdict.BENIGN])


def describe(finding: Finding) -> Change:
    change = finding.change
    return Change(path=display_name(change.current_path), path_b64=finding.path_b64, change=change.kind.value,
                  type=change.file_type.value,
                  verdict=finding.verdict.value, rule=finding.rule, ctime=str(change.ctime))
