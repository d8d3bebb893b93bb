"""`preserve`: evidence before any change — snapshot, hold, and copy the streams off the host.

The protected datasets are snapshotted together (one transaction group) as
``@incident-<run>`` and held, so the compromised state cannot vanish. Each
snapshot is sent to a file on the host, hashed there while streaming, copied
to the run directory and hashed again here: both hashes go into the journal
(chain of custody). The temporary stream file on the host is then removed.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, register
from recovery.steps.zfs_host import (
    EVIDENCE_HOLD,
    agent,
    agent_errors,
    incident_snapshot,
    protected,
    snapshots,
)
from recovery.zfs.swap import SwapNames, filesystems


class PreserveParams(Strict):
    copy_streams: bool = Field(True, description="Copy the snapshot streams off the host.")
    spool: str = Field("/var/tmp", description="Directory on the host for the stream while it is copied.")


@register
class PreserveStep(StepKind):
    kind = "preserve"
    summary = "snapshot @incident-<run>, hold it, copy the streams off the host (evidence)"
    Params = PreserveParams

    def check(self, ctx: StepContext) -> Check:
        with agent_errors(ctx.host, "checking evidence"):
            client = agent(ctx)
            for dataset, name in _evidence(client, ctx).items():
                if name not in {s.name for s in snapshots(client, name.split("@")[0])}:
                    return Check.NOT_DONE
                if EVIDENCE_HOLD not in client.holds(name):
                    return Check.NOT_DONE
                if ctx.params.copy_streams and not _stream_path(ctx, dataset).is_file():
                    return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        client = agent(ctx)
        if ctx.params.copy_streams and not hasattr(ctx.session(ctx.host), "get"):
            raise StepFailed(f"{ctx.host}: copying streams needs SSH, and the host is on its console: "
                             "set copy_streams = false here and preserve again after boot_normal")
        with agent_errors(ctx.host, "snapshotting evidence"):
            names = _evidence(client, ctx)
            existing = {s.name for n in names.values() for s in snapshots(client, n.split("@")[0])}
            if missing := [n for n in names.values() if n not in existing]:
                client.snapshot(missing)
            if unheld := {n: EVIDENCE_HOLD for n in names.values() if EVIDENCE_HOLD not in client.holds(n)}:
                client.hold(unheld)
        return {"snapshots": {name: self._record(ctx, client, dataset, name) for dataset, name in names.items()}}

    def _record(self, ctx: StepContext, client: Any, dataset: str, name: str) -> dict[str, Any]:
        with agent_errors(ctx.host, f"describing {name}"):
            (row,) = [s for s in snapshots(client, name.split("@")[0]) if s.name == name]
        record: dict[str, Any] = {"guid": row.guid, "createtxg": row.createtxg, "held": EVIDENCE_HOLD}
        if ctx.params.copy_streams:
            local = _stream_path(ctx, dataset)
            record.update(copy_stream(ctx, client, name, local, ctx.params.spool))
            record["copy"] = str(local.relative_to(ctx.run_dir))  # the run dir may move
        ctx.note(f"{name}: held" + (f", {record['bytes']} bytes copied, sha256 {record['sha256'][:16]}…"
                                    if "sha256" in record else ""))
        return record


def _evidence(client: Any, ctx: StepContext) -> dict[str, str]:
    return {dataset: evidence_snapshot(client, ctx, dataset) for dataset in protected(ctx)}


def copy_stream(ctx: StepContext, client: Any, snapshot: str, local: Path,
                spool: str = "/var/tmp") -> dict[str, Any]:
    """Send ``snapshot`` to a file on the host (hashed there), fetch it to ``local``, hash, compare."""
    local.parent.mkdir(parents=True, exist_ok=True)
    remote = f"{spool}/recovery-{ctx.run_id}-{local.name}"
    session = ctx.session(ctx.host)
    session.run(f"rm -f -- {shlex.quote(remote)}", timeout=30)  # left by a crashed attempt
    with agent_errors(ctx.host, f"sending {snapshot}"):
        sent = client.send(snapshot, remote)
    partial = local.with_suffix(".partial")
    session.get(remote, str(partial))
    local_sha = _sha256(partial)
    if local_sha != sent.sha256:
        raise StepFailed(f"{ctx.host}: stream of {snapshot} changed in transit: the host hashed "
                         f"{sent.sha256}, the copy here hashes {local_sha}")
    partial.replace(local)
    session.run(f"rm -f -- {shlex.quote(remote)}", timeout=30)
    return {"bytes": sent.bytes, "sha256": sent.sha256, "copy": str(local)}


def evidence_snapshot(client: Any, ctx: StepContext, dataset: str) -> str:
    """``D@incident-<run>``, or its name after a restore moved it with ``D`` into quarantine."""
    names = SwapNames.for_run(dataset, ctx.run_id)
    if names.quarantine in filesystems(client, dataset):
        return incident_snapshot(ctx, names.quarantine)
    return incident_snapshot(ctx, dataset)


def stream_name(snapshot: str) -> str:
    return snapshot.replace("/", "_") + ".zfs"


def _stream_path(ctx: StepContext, dataset: str) -> Path:
    """Named after the evidence snapshot as taken, before a restore may move it into quarantine."""
    return ctx.run_dir / "evidence" / str(ctx.host) / stream_name(incident_snapshot(ctx, dataset))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
