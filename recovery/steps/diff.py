"""`diff`: what changed since the golden snapshot, triaged into indicators and the rest.

The diff runs from ``@golden-*`` to the evidence snapshot ``@incident-<run>``
(taken by `preserve`), so it describes exactly what is preserved. ``zfs diff``
sees a change by its ctime, which an attacker cannot backdate the way
``touch -d`` backdates an mtime.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepKind, StepOutputs, register
from recovery.steps.triage_rules import TriageParams
from recovery.steps.zfs_host import (
    Listing,
    SnapshotsOf,
    agent,
    agent_errors,
    each_dataset,
    golden_in,
    incident_snapshot,
    protected,
    triaged,
)
from recovery.zfs.diff import display_name
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


class DiffOutputs(StepOutputs):
    datasets: dict[str, DatasetDiff] = Field(default_factory=dict)
    indicators: int = 0


@register
class DiffStep(StepKind):
    kind = "diff"
    summary = "diff @golden -> @incident and triage the changes into indicators"
    Params = TriageParams
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
                golden = golden_in(listing.snapshots(dataset), dataset).name
                findings = triaged(client, golden, incident_snapshot(ctx, dataset), rules, known)
            summary = summarize(golden, findings)
            ctx.note(f"{dataset}: {len(findings)} changes since {golden.split('@')[1]}, "
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
