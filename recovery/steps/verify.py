"""`verify`: compare the host's tools and critical files with its golden manifest.

From the rescue system (channel ``rescue``) it looks from the trusted side:
the tools are the rescue image's own, so instead every protected dataset,
the boot environment first among them, is compared with its golden snapshot
by ``zfs diff`` (every executable, set-uid file, start-up and account file
the triage rules know; an indicator fails the step), and the critical files
are hashed where the rescue system mounted them.

The tools recovery relies on (zfs, zpool, python3, libzfs_core) must hash as
they did at golden capture; if not, the host stops here and the operator is
pointed at the rescue path (`boot = "rescue"`: a trusted image with its own
tools). Critical files that differ are listed; with ``strict = true`` they
fail the step too.

The hashes are computed by the host's own python3, so a rootkit that lies
about file contents is not caught here: that is what the rescue image is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from recovery.engine import state
from recovery.engine.access import Channel
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.diff import DatasetDiff, summarize
from recovery.steps.golden import GoldenParams, store_dir
from recovery.steps.zfs_host import (
    Listing,
    SnapshotsOf,
    agent,
    agent_errors,
    each_dataset,
    host_path,
    inspection_mounts,
    protected,
    triaged,
)
from recovery.zfs import manifest
from recovery.zfs.client import AgentClient


class VerifyParams(GoldenParams):
    strict: bool = Field(False, description="Fail on changed critical files too, not only on changed tools.")


def golden_snapshot(listing: Listing, golden: dict[str, Any], dataset: str) -> str:
    """The golden snapshot the manifest names, if it is still the one captured (guid and createtxg)."""
    captured = golden["datasets"].get(dataset)
    if captured is None:
        raise StepFailed(f"{dataset}: not in the golden manifest of {golden['captured']}: "
                         "capture one with `recover golden`")
    if not manifest.as_captured(captured, listing.snapshots(dataset)):
        raise StepFailed(f"{captured['snapshot']}: missing, or not the snapshot captured as golden "
                         "(guid/createtxg differ)")
    return str(captured["snapshot"])


def newest_manifest(store: Path, host: str) -> dict[str, Any]:
    try:
        return manifest.newest(store, host)
    except manifest.ManifestMissing as exc:
        raise StepFailed(str(exc)) from None


def differences(expected: dict[str, str], found: dict[bytes, str]) -> list[str]:
    now = {path.decode("utf-8", "backslashreplace"): digest for path, digest in found.items()}
    changed = [f"{p}: changed" for p, d in expected.items() if p in now and now[p] != d]
    missing = [f"{p}: missing" for p in expected if p not in now]
    return sorted(changed + missing)


def against_manifest(client: AgentClient, host: str, golden: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The tools and the critical files that differ from the golden manifest, hashed by the host itself."""
    with agent_errors(host, "hashing tools and critical files"):
        tools, _ = client.hashes([p.encode() for p in golden["tools"]])
        files, _ = client.hashes([p.encode() for p in golden["files"]])
    return differences(golden["tools"], tools), differences(golden["files"], files)


class VerifyOutputs(StepOutputs):
    golden: str = ""  # when the manifest compared against was captured
    tools: int = 0
    files_differing: list[str] = Field(default_factory=list)
    trusted_side: bool = False  # looked at from the rescue system, with its tools
    since_golden: dict[str, DatasetDiff] = Field(default_factory=dict)  # from the rescue system only


@register
class VerifyStep(StepKind):
    kind = "verify"
    summary = "check the host's tools and critical files against the golden manifest"
    Params = VerifyParams
    Outputs = VerifyOutputs
    repeatable = True  # read-only

    def apply(self, ctx: StepContext) -> VerifyOutputs:
        golden = newest_manifest(store_dir(ctx.params), str(ctx.host))
        if ctx.here.channel is Channel.RESCUE:
            return from_rescue(ctx, golden)
        bad_tools, bad_files = against_manifest(agent(ctx), str(ctx.host), golden)
        if bad_tools:
            raise StepFailed(f"{ctx.host}: tools differ from the golden manifest ({'; '.join(bad_tools)}): "
                             "do not trust this system's tools; recover it from a trusted rescue image "
                             "(boot = \"rescue\")")
        if bad_files and ctx.params.strict:
            raise StepFailed(f"{ctx.host}: {len(bad_files)} critical files differ from golden: "
                             + "; ".join(bad_files[:20]))
        ctx.note(f"{ctx.host}: tools match golden {golden['captured']}; "
                 f"{len(bad_files)} of {len(golden['files'])} critical files differ")
        return VerifyOutputs(golden=golden["captured"], tools=len(golden["tools"]), files_differing=bad_files[:200])


def from_rescue(ctx: StepContext, golden: dict[str, Any]) -> VerifyOutputs:
    """The restored datasets against golden with the rescue system's tools; any indicator fails.

    Before the run has looked at the host's datasets (the playbook's
    ``trust-tools`` position) there is nothing of the host to trust: every
    tool in use is the rescue image's, whose hash the BMC checked."""
    if not any(r.kind == "diff" and r.state == state.DONE for r in ctx.history(str(ctx.host))):
        ctx.note(f"{ctx.host}: the tools in use are the rescue image's own; none of the host's runs")
        return VerifyOutputs(golden=golden["captured"], trusted_side=True)
    client = agent(ctx)
    datasets = protected(ctx)
    with agent_errors(ctx.host, "comparing the restored datasets with golden from the rescue system"):
        inspection_mounts(client, datasets)
        listing = Listing.of(client, datasets)
        held = as_snapshotted(client, listing, datasets)
        known = SnapshotsOf.listed(ctx, listing)
        since = each_dataset(lambda d: _since_golden(client, listing, known, golden, d, held.get(d)), datasets)
        altroot = client.altroot(datasets[0].split("/", 1)[0]) or "/"
        files = hashed_below(client, altroot, list(golden["files"]))
    found = [f"{d}: {f.path}" for d, diff in since.items() for f in diff.findings if f.verdict == "indicator"]
    if found:
        raise StepFailed(f"{ctx.host}: the restored state differs from golden where it matters ({len(found)}: "
                         + "; ".join(found[:10]) + "): it must not return to service")
    bad_files = differences(golden["files"], files)
    if bad_files and ctx.params.strict:
        raise StepFailed(f"{ctx.host}: {len(bad_files)} critical files differ from golden: " + "; ".join(bad_files[:20]))
    ctx.note(f"{ctx.host}: from the rescue system: {len(since)} datasets match golden {golden['captured']} "
             f"where it matters ({len(held)} judged by the snapshot whose files they hold); "
             f"{len(bad_files)} of {len(golden['files'])} critical files differ")
    return VerifyOutputs(golden=golden["captured"], files_differing=bad_files[:200], trusted_side=True,
                         since_golden=since)


def _since_golden(client: AgentClient, listing: Listing, known: SnapshotsOf, golden: dict[str, Any], dataset: str,
                  held: str | None) -> DatasetDiff:
    """Golden -> the dataset as it is; golden -> the snapshot it holds unchanged where there is one
    (the same files, and a diff `find_clean` or `diff` may have triaged already)."""
    snapshot = golden_snapshot(listing, golden, dataset)
    return summarize(snapshot, triaged(client, snapshot, held or dataset, None, known))


def as_snapshotted(client: AgentClient, listing: Listing, datasets: list[str]) -> dict[str, str]:
    """The datasets whose files are those of their newest snapshot, and that snapshot.

    ``written`` = 0 says so at once: it counts every block not shared with the
    newest snapshot, and a changed byte, mode or name writes one. A dataset
    left alone holds its evidence snapshot so. A restored clone has a few
    blocks written the moment it is made (its object set's own bookkeeping,
    no file), so it is asked with ``zfs diff`` from its clean snapshot: a
    diff that finds nothing at all (no change, no line it cannot read) is the
    same files, and that diff costs far less than one from golden."""
    newest = {d: own[-1].name for d in datasets if (own := listing.snapshots(d))}
    written = {row["name"]: row["value"] for row in client.get(list(newest), ["written"])} if newest else {}
    unsure = [d for d in newest if written.get(d) != "0"]
    unchanged = each_dataset(lambda d: _unchanged_since(client, newest[d], d), unsure) if unsure else {}
    return {d: snapshot for d, snapshot in newest.items() if written.get(d) == "0" or unchanged.get(d)}


def _unchanged_since(client: AgentClient, snapshot: str, dataset: str) -> bool:
    result = client.diff_changes(snapshot, dataset)
    return not result.changes and not result.malformed_count


def hashed_below(client: AgentClient, altroot: str, paths: list[str]) -> dict[bytes, str]:
    """sha256 of the host's ``paths`` where the rescue system mounted them, keyed by the host's own path."""
    prefix = altroot.rstrip("/").encode()
    found, _ = client.hashes([prefix + p.encode() for p in paths])
    return {host_path(path, prefix) if prefix else path: digest for path, digest in found.items()}
