"""`diff`: what changed since the golden snapshot, triaged into indicators and the rest.

The diff runs from ``@golden-*`` to the evidence snapshot ``@incident-<run>``
(taken by `preserve`), so it describes exactly what is preserved. ``zfs diff``
sees a change by its ctime, which an attacker cannot backdate the way
``touch -d`` backdates an mtime.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from recovery.engine.registry import StepContext, StepKind, register
from recovery.steps.triage_rules import TriageParams
from recovery.steps.zfs_host import (
    agent,
    agent_errors,
    golden_of,
    incident_snapshot,
    protected,
    triaged,
)
from recovery.zfs.diff import display_name
from recovery.zfs.triage import Finding, Verdict

#: Findings listed per dataset in the journal (counts are always complete).
LISTED = 200


@register
class DiffStep(StepKind):
    kind = "diff"
    summary = "diff @golden -> @incident and triage the changes into indicators"
    Params = TriageParams
    repeatable = True  # read-only: always look afresh

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        client = agent(ctx)
        datasets = {}
        for dataset in protected(ctx):
            with agent_errors(ctx.host, f"diffing {dataset}"):
                golden = golden_of(client, dataset).name
                findings = triaged(client, golden, incident_snapshot(ctx, dataset), ctx.params.compiled())
            datasets[dataset] = summarize(golden, findings)
            found = datasets[dataset]["counts"].get("indicator", 0)
            ctx.note(f"{dataset}: {len(findings)} changes since {golden.split('@')[1]}, {found} indicators")
        return {"datasets": datasets,
                "indicators": sum(d["counts"].get("indicator", 0) for d in datasets.values())}


def summarize(golden: str, findings: list[Finding]) -> dict[str, Any]:
    counts = Counter(f.verdict.value for f in findings)
    worst = sorted(findings, key=lambda f: -f.verdict.severity)
    return {
        "golden": golden,
        "counts": dict(counts),
        "findings": [describe(f) for f in worst[:LISTED] if f.verdict is not Verdict.BENIGN],
    }


def describe(finding: Finding) -> dict[str, Any]:
    change = finding.change
    return {"path": display_name(change.current_path), "change": change.kind.value, "type": change.file_type.value,
            "verdict": finding.verdict.value, "rule": finding.rule, "ctime": str(change.ctime)}
