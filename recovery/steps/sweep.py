"""`sweep`: a read-only look at the hosts that left rotation with the target without being recovered.

`divert` takes a whole service to the mirror, so `return` decides about every
host of it, including siblings the run never examined (in 2009 both web
servers had the scripts). For each host of the diverted services that is not
a target, over its normal SSH channel, the sweep changes nothing: ``zfs diff``
from the golden snapshot the manifest names (guid checked) to the live file
system, triaged with the same rules as `diff`, and the tools and critical files
of `verify` against the golden manifest. Each host ends ``clean``, ``dirty``
(its indicators listed like `diff`'s) or ``unsweepable`` (why): a host that
cannot be swept is never taken for clean.

``zfs diff`` against a live file system takes a temporary snapshot of its own,
which it destroys when it exits; nothing of it remains on the host.

The sweep runs the host's own tools (zfs, python3) on its running system: a
rootkit can lie to them. It is weaker evidence than a recovery from a rescue
boot, and the report says so.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from recovery.config.base import Strict
from recovery.config.inventory import Inventory
from recovery.config.targets import Target, beside_target
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.errors import Fault
from recovery.hostile import for_terminal
from recovery.steps.diff import DatasetDiff, summarize
from recovery.steps.golden import store_dir
from recovery.steps.triage_rules import TriageParams
from recovery.steps.verify import VerifyParams, against_manifest, newest_manifest
from recovery.steps.zfs_host import agent_errors, snapshots, triaged
from recovery.zfs.client import AgentClient

#: What a clean sweep is worth, said wherever one is reported.
CAVEAT = ("a sweep runs the host's own tools on its running system, which a rootkit can deceive: "
          "weaker evidence than a recovery from a rescue boot")

Verdict = Literal["clean", "dirty", "unsweepable"]


class SweepParams(TriageParams, VerifyParams):
    """The triage rules of `diff` and the golden store, critical paths and strictness of `verify`."""


class SweptHost(Strict):
    verdict: Verdict
    reason: str = ""  # why dirty or unsweepable, for the operator
    golden: str = ""  # when the manifest compared against was captured
    datasets: dict[str, DatasetDiff] = Field(default_factory=dict)
    indicators: int = 0
    tools_differing: list[str] = Field(default_factory=list)
    files_differing: list[str] = Field(default_factory=list)


class SweepOutputs(StepOutputs):
    hosts: dict[str, SweptHost] = Field(default_factory=dict)


@register
class SweepStep(StepKind):
    kind = "sweep"
    scope = "run"
    summary = ("read-only look at the service's other hosts over SSH: zfs diff golden -> live, "
               "tools and critical files against the golden manifest")
    Params = SweepParams
    Outputs = SweepOutputs
    repeatable = True  # read-only: always look afresh

    def apply(self, ctx: StepContext) -> SweepOutputs:
        hosts = beside_target(ctx.inventory, ctx.target)
        if not hosts:
            ctx.note("every host of the diverted services is a target of this run: nothing to sweep")
        outputs = SweepOutputs()
        for host in hosts:
            outputs.hosts[host] = sweep_host(ctx, host)
            ctx.note(f"{host}: {outputs.hosts[host].verdict}"
                     + (f": {outputs.hosts[host].reason}" if outputs.hosts[host].reason else ""))
        return outputs

    def foresee(self, inventory: Inventory, target: Target, before: tuple[str, ...]) -> dict[str, str]:
        return {h: "swept read-only over SSH (zfs diff golden -> live, tools, critical files)"
                for h in beside_target(inventory, target)}


def sweep_host(ctx: StepContext, host: str) -> SweptHost:
    """One host's sweep; any fault on the way (unreachable, no golden, a lying reply) makes it unsweepable."""
    try:
        return _look(ctx, host)
    except Fault as exc:
        return SweptHost(verdict="unsweepable", reason=for_terminal(str(exc), 500))


def _look(ctx: StepContext, host: str) -> SweptHost:
    golden = newest_manifest(store_dir(ctx.params), host)
    datasets = ctx.inventory.hosts[host].datasets
    if not datasets:
        raise StepFailed(f"{host}: no protected datasets in the inventory (hosts.{host}.datasets)")
    client = AgentClient(ctx.access(host).session(), timeout=ctx.timeout)
    diffs = {}
    for dataset in datasets:
        with agent_errors(host, f"sweeping {dataset}"):
            snapshot = golden_snapshot(client, golden, dataset)
            diffs[dataset] = summarize(snapshot, triaged(client, snapshot, dataset, ctx.params.compiled()))
    bad_tools, bad_files = against_manifest(client, host, golden)
    return judged(golden["captured"], diffs, bad_tools, bad_files, ctx.params.strict)


def golden_snapshot(client: AgentClient, golden: dict[str, Any], dataset: str) -> str:
    """The golden snapshot the manifest names, if it is still the one captured (guid and createtxg)."""
    captured = golden["datasets"].get(dataset)
    if captured is None:
        raise StepFailed(f"{dataset}: not in the golden manifest of {golden['captured']}: "
                         "capture one with `recover golden`")
    found = [s for s in snapshots(client, dataset) if s.name == captured["snapshot"]]
    if not found or (found[0].guid, found[0].createtxg) != (captured["snapshot_guid"], captured["createtxg"]):
        raise StepFailed(f"{captured['snapshot']}: missing, or not the snapshot captured as golden "
                         "(guid/createtxg differ)")
    return str(captured["snapshot"])


def judged(captured: str, diffs: dict[str, DatasetDiff], bad_tools: list[str], bad_files: list[str],
           strict: bool) -> SweptHost:
    """The verdict: dirty on any indicator or changed tool (and on changed critical files when strict)."""
    indicators = sum(d.counts.get("indicator", 0) for d in diffs.values())
    reasons = []
    if indicators:
        paths = [f.path for d in diffs.values() for f in d.findings if f.verdict == "indicator"]
        reasons.append(f"{indicators} indicators since golden ({', '.join(paths[:5])}"
                       f"{', ...' if len(paths) > 5 else ''})")
    if bad_tools:
        reasons.append(f"tools differ from golden ({'; '.join(bad_tools)})")
    if bad_files and strict:
        reasons.append(f"{len(bad_files)} critical files differ from golden")
    return SweptHost(verdict="dirty" if reasons else "clean", reason="; ".join(reasons), golden=captured,
                     datasets=diffs, indicators=indicators, tools_differing=bad_tools,
                     files_differing=bad_files[:200])
