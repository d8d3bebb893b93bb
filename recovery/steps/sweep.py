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

The targets this run restored are looked at again too, just before `return`:
``zfs diff`` from the clean snapshot each dataset now serves to its live state.
Between the restore and `return` the host ran multi-user on the service's
network, where whatever carried the attack in (in 2009 the staging host's
scheduled rsync) can carry it in again; an indicator since the restore keeps
the host out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from recovery.config.base import Strict
from recovery.config.inventory import Inventory
from recovery.config.targets import Target, beside_target
from recovery.engine import state
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, StepRecord, register
from recovery.errors import Fault
from recovery.hostile import for_terminal
from recovery.steps.diff import DatasetDiff, summarize
from recovery.steps.golden import store_dir
from recovery.steps.restore import RestoreOutputs
from recovery.steps.triage_rules import TriageParams
from recovery.steps.verify import VerifyParams, against_manifest, golden_snapshot, newest_manifest
from recovery.steps.zfs_host import Listing, agent_errors, each_dataset, triaged
from recovery.zfs.client import AgentClient
from recovery.zfs.pipeline import side_by_side

#: What a clean sweep is worth, said wherever one is reported.
CAVEAT = ("a sweep runs the host's own tools on its running system, which a rootkit can deceive: "
          "weaker evidence than a recovery from a rescue boot")

Verdict = Literal["clean", "dirty", "unsweepable"]


class SweepParams(TriageParams, VerifyParams):
    """The triage rules of `diff` and the golden store, critical paths and strictness of `verify`."""

    look_at: Literal["all", "restored", "beside"] = Field(
        "all", description="restored: the targets this run restored, again since their restore; beside: the "
                           "service's hosts beside the target; all: both. A `return` after a `restored` sweep "
                           "puts the recovered hosts back without waiting for the others' sweep.")


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
    restored: dict[str, SweptHost] = Field(default_factory=dict)  # targets looked at again since their restore


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
        """This sweep's looks, added to what the run's earlier sweeps found (a later one of a kind wins),
        so a `return` weighs every sweep of the run, whichever ran last."""
        wanted = ctx.params.look_at
        hosts = beside_target(ctx.inventory, ctx.target) if wanted != "restored" else []
        if not hosts and wanted != "restored":
            ctx.note("every host of the diverted services is a target of this run: nothing to sweep")
        restored = {h: r for h in ctx.target.hosts if (r := restored_snapshots(ctx.history(h)))
                    and wanted != "beside"}
        looks = [("swept", h, lambda h=h: sweep_host(ctx, h)) for h in hosts]
        looks += [("restored", h, lambda h=h: recheck_host(ctx, h, restored[h])) for h in restored]
        found = side_by_side(lambda look: look[2](), looks)  # every host's own agent, all at once
        earlier = ctx.optional_output(SweepOutputs) or SweepOutputs()
        outputs = SweepOutputs(hosts=dict(earlier.hosts), restored=dict(earlier.restored))
        for (what, host, _), swept in zip(looks, found):
            if what == "swept":
                outputs.hosts[host] = _said(ctx, host, swept)
            else:
                outputs.restored[host] = _said(ctx, host, swept, "since its restore")
        return outputs

    def foresee(self, inventory: Inventory, target: Target, before: tuple[str, ...],
                params: Any = None) -> dict[str, str]:
        wanted = params.look_at if params is not None else "all"
        said = {h: "swept read-only over SSH (zfs diff golden -> live, tools, critical files)"
                for h in beside_target(inventory, target)} if wanted != "restored" else {}
        if "restore" in before and wanted != "beside":
            said |= {h: "looked at again over SSH: zfs diff from the restored snapshot -> live"
                     for h in target.hosts}
        return said


def _said(ctx: StepContext, host: str, swept: SweptHost, since: str = "") -> SweptHost:
    ctx.note(f"{host}: {swept.verdict}{' ' + since if since else ''}" + (f": {swept.reason}" if swept.reason else ""))
    return swept


def restored_snapshots(history: list[StepRecord]) -> dict[str, str]:
    """The clean snapshot each dataset serves since the newest `restore` done on the host."""
    for record in reversed(history):
        if record.kind == "restore" and record.state == state.DONE:
            return {d: r.clean for d, r in RestoreOutputs.model_validate(record.outputs).datasets.items()}
    return {}


def recheck_host(ctx: StepContext, host: str, restored: dict[str, str]) -> SweptHost:
    """A restored target's changes since its restore; any fault makes it unsweepable, never clean."""
    try:
        client = AgentClient(ctx.access(host).session(), timeout=ctx.timeout, served=True)

        def since_restore(dataset: str) -> DatasetDiff:
            with agent_errors(host, f"looking at {dataset} since its restore"):
                clean = restored[dataset]
                return summarize(clean, triaged(client, clean, dataset, ctx.params.compiled()))

        diffs = each_dataset(since_restore, list(restored))
    except Fault as exc:
        return SweptHost(verdict="unsweepable", reason=for_terminal(str(exc), 500))
    swept = judged("", diffs, [], [], strict=False, since="its restore")
    if swept.verdict == "dirty":
        swept.reason += ("; something wrote to it after the restore: contain whatever pushes to it "
                         "(a sync or deploy job on another host) before recovering it again")
    return swept


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
    client = AgentClient(ctx.access(host).session(), timeout=ctx.timeout, served=True)
    with agent_errors(host, "listing snapshots"):
        listing = Listing.of(client, datasets)

    def since_golden(dataset: str) -> DatasetDiff:
        with agent_errors(host, f"sweeping {dataset}"):
            snapshot = golden_snapshot(listing, golden, dataset)
            return summarize(snapshot, triaged(client, snapshot, dataset, ctx.params.compiled()))

    diffs = each_dataset(since_golden, list(datasets))
    bad_tools, bad_files = against_manifest(client, host, golden)
    return judged(golden["captured"], diffs, bad_tools, bad_files, ctx.params.strict)


def judged(captured: str, diffs: dict[str, DatasetDiff], bad_tools: list[str], bad_files: list[str],
           strict: bool, since: str = "golden") -> SweptHost:
    """The verdict: dirty on any indicator or changed tool (and on changed critical files when strict)."""
    indicators = sum(d.counts.get("indicator", 0) for d in diffs.values())
    reasons = []
    if indicators:
        paths = [f.path for d in diffs.values() for f in d.findings if f.verdict == "indicator"]
        reasons.append(f"{indicators} indicators since {since} ({', '.join(paths[:5])}"
                       f"{', ...' if len(paths) > 5 else ''})")
    if bad_tools:
        reasons.append(f"tools differ from golden ({'; '.join(bad_tools)})")
    if bad_files and strict:
        reasons.append(f"{len(bad_files)} critical files differ from golden")
    return SweptHost(verdict="dirty" if reasons else "clean", reason="; ".join(reasons), golden=captured,
                     datasets=diffs, indicators=indicators, tools_differing=bad_tools,
                     files_differing=bad_files[:200])
