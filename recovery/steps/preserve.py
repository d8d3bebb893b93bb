"""`preserve`: evidence before any change — snapshot, hold, and copy the streams off the host.

The protected datasets are snapshotted together (one transaction group) as
``@incident-<run>`` and held, so the compromised state cannot vanish. Each
snapshot's ``zfs send`` stream comes straight into the run directory and is
hashed here (chain of custody: the hash and size go into the journal);
nothing is written on the host, whose disks are the evidence.

Where the golden store holds the full stream of the dataset's golden snapshot
and the host still has that snapshot as captured, the copy is an increment of
it (``zfs send -i``): golden's stream and the increment, received in that
order, are the evidence (a dataset restored by clone and promote sends a clone
stream, received as a new file system). A boot environment's full stream is
hundreds of MB through the host's sshd; its increment since golden is what the
host did since. Every copy's BEGIN record is checked: it carries the evidence
snapshot, as an increment of exactly that golden snapshot or in full. A stream
copied whole by an earlier, interrupted attempt is kept (checked again), not
copied twice.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.access import Channel
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.zfs_host import (
    EVIDENCE_HOLD,
    Listing,
    agent,
    agent_errors,
    each_dataset,
    incident_snapshot,
    protected,
)
from recovery.transport.result import TransportError
from recovery.zfs import manifest
from recovery.zfs.manifest import sha256_file
from recovery.zfs.stream import StreamHeaderError, check_head, read_head
from recovery.zfs.swap import SwapNames

#: Headroom of a stream over the snapshot's logical size (headers, records of small files).
STREAM_SLACK = 16 * 1024 * 1024


class PreserveParams(Strict):
    copy_streams: bool = Field(True, description="Copy the snapshot streams off the host.")
    from_golden: bool = Field(
        True, description="Copy each stream as an increment of the dataset's golden snapshot where the golden "
                          "store holds that snapshot's full stream and the host still has it as captured (golden's "
                          "stream, then the increment, received in that order, are the evidence); in full otherwise.")
    store: str | None = Field(None, description="Golden store directory [default: $RECOVERY_GOLDEN_STORE or "
                                                "./golden-store].")


class Evidence(Strict):
    """One held evidence snapshot and, once copied, its stream here (path relative to the run directory)."""

    guid: int
    createtxg: int
    held: str
    bytes: int | None = None
    sha256: str | None = None
    stream: str | None = None  # the copied stream, relative to the run directory
    base: str | None = None  # the golden snapshot the stream is an increment of; None: a full stream
    base_guid: int | None = None
    base_stream: str | None = None  # golden's full stream in the golden store
    base_sha256: str | None = None
    base_clone: bool = False  # the increment is a clone stream: received as a new file system


@dataclass(frozen=True)
class Base:
    """A golden snapshot an evidence stream can be an increment of, and its full stream in the store."""

    snapshot: str
    guid: int
    stream: str
    sha256: str

    def fields(self) -> dict[str, Any]:
        return {"base": self.snapshot, "base_guid": self.guid, "base_stream": self.stream, "base_sha256": self.sha256}


class PreserveOutputs(StepOutputs):
    snapshots: dict[str, Evidence] = Field(default_factory=dict)  # evidence snapshot name -> record


@register
class PreserveStep(StepKind):
    kind = "preserve"
    summary = "snapshot @incident-<run>, hold it, copy the streams off the host (evidence)"
    Params = PreserveParams
    Outputs = PreserveOutputs

    def check(self, ctx: StepContext) -> Check:
        with agent_errors(ctx.host, "checking evidence"):
            client = agent(ctx)
            listing = Listing.of(client, protected(ctx))
            names = _evidence(listing, ctx)
            if not all(name in listing.names for name in names.values()):
                return Check.NOT_DONE
            if not all(each_dataset(lambda d: _held(client, names[d]), list(names)).values()):
                return Check.NOT_DONE
        if ctx.params.copy_streams and not all(_stream_path(ctx, d).is_file() for d in names):
            return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> PreserveOutputs:
        client = agent(ctx)
        if ctx.params.copy_streams and ctx.here.channel is not Channel.SSH:
            raise StepFailed(f"{ctx.host}: copying streams needs SSH, and the host is on its console: "
                             "set copy_streams = false here and preserve again after boot_normal")
        with agent_errors(ctx.host, "snapshotting evidence"):
            listing = Listing.of(client, protected(ctx))
            names = _evidence(listing, ctx)
            if missing := [name for name in names.values() if name not in listing.names]:
                client.snapshot(missing)
                listing = Listing.of(client, protected(ctx))
            older = [d for d in names if names[d] not in missing]  # a snapshot made now holds nothing yet
            held = each_dataset(lambda d: _held(client, names[d]), older)
            if unheld := {names[d]: EVIDENCE_HOLD for d in names if not held.get(d)}:
                client.hold(unheld)
        described = {d: self._described(ctx, listing, d, names[d]) for d in names}
        return PreserveOutputs(snapshots={names[d]: self._recorded(ctx, client, listing, d, names[d], record)
                                          for d, record in described.items()})

    def outputs_when_done(self, ctx: StepContext) -> PreserveOutputs:
        """The evidence as it is on the host (and here), so the report lists it after a resume too."""
        client = agent(ctx)
        with agent_errors(ctx.host, "describing evidence"):
            listing = Listing.of(client, protected(ctx))
        names = _evidence(listing, ctx)
        return PreserveOutputs(already_done=True, snapshots={names[d]: self._described(ctx, listing, d, names[d])
                                                             for d in names})

    def _recorded(self, ctx: StepContext, client: Any, listing: Listing, dataset: str, name: str,
                  record: Evidence) -> Evidence:
        """The record, with the stream copied (one at a time: they share the host's disks and line)."""
        if ctx.params.copy_streams and record.sha256 is None:
            local = _stream_path(ctx, dataset)
            base = golden_base(ctx, listing, dataset) if ctx.params.from_golden else None
            sent = copy_stream(ctx, client, name, local, record.guid, base)
            record = record.model_copy(update={"bytes": sent["bytes"], "sha256": sent["sha256"],
                                               "stream": str(local.relative_to(ctx.run_dir)),  # the run dir may move
                                               **(base.fields() if base else {}),
                                               "base_clone": bool(base) and read_head(local).clone})
        ctx.note(f"{name}: held" + (f", {record.bytes} bytes copied" if record.sha256 else "")
                 + (f" (an increment of {record.base})" if record.base else "")
                 + (f", sha256 {record.sha256[:16]}…" if record.sha256 else ""))
        return record

    def _described(self, ctx: StepContext, listing: Listing, dataset: str, name: str) -> Evidence:
        rows = [s for s in listing.rows if s.name == name]
        if len(rows) != 1:
            raise StepFailed(f"{ctx.host}: evidence snapshot {name} not found on the host")
        record = Evidence(guid=rows[0].guid, createtxg=rows[0].createtxg, held=EVIDENCE_HOLD)
        local = _stream_path(ctx, dataset)
        if ctx.params.copy_streams and local.is_file():
            record = record.model_copy(update={"bytes": local.stat().st_size, "sha256": sha256_file(local),
                                               "stream": str(local.relative_to(ctx.run_dir)),
                                               **self._base_of_copy(ctx, listing, dataset, local, record.guid)})
        return record

    def _base_of_copy(self, ctx: StepContext, listing: Listing, dataset: str, local: Path, guid: int) -> dict[str, Any]:
        """What a stream copied before (by an earlier, interrupted attempt) is an increment of, checked again."""
        try:
            head = read_head(local)
            base = golden_base(ctx, listing, dataset) if head.incremental else None
            if head.incremental and base is None:
                raise StepFailed(f"{ctx.host}: the copied stream of {dataset} is an increment of guid "
                                 f"{head.from_guid}, which is not a golden snapshot whose full stream is in the "
                                 "golden store")
            check_head(local, guid, base.guid if base else 0)
        except StreamHeaderError as exc:
            raise StepFailed(f"{ctx.host}: the copied stream of {dataset} is not the evidence: {exc}") from None
        return {**base.fields(), "base_clone": head.clone} if base else {}


def _evidence(listing: Listing, ctx: StepContext) -> dict[str, str]:
    return {dataset: evidence_snapshot(listing, ctx, dataset) for dataset in protected(ctx)}


def _held(client: Any, name: str) -> bool:
    return EVIDENCE_HOLD in client.holds(name)


def golden_base(ctx: StepContext, listing: Listing, dataset: str) -> Base | None:
    """The dataset's golden snapshot as the host's newest manifest captured it, if the host still has it
    (guid and createtxg) and the golden store its full stream; None otherwise (the copy is then full)."""
    try:
        captured = manifest.newest(manifest.store_path(ctx.params.store), str(ctx.host))["datasets"][dataset]
        stream, digest = captured["stream"]["copy"], captured["stream"]["sha256"]
        if not manifest.as_captured(captured, listing.snapshots(dataset)) or not Path(stream).is_file():
            return None
    except (manifest.ManifestMissing, OSError, ValueError, KeyError, TypeError):
        return None
    return Base(captured["snapshot"], captured["snapshot_guid"], stream, digest)


def copy_stream(ctx: StepContext, client: Any, snapshot: str, local: Path, guid: int,
                base: Base | None = None) -> dict[str, Any]:
    """``zfs send -c`` of ``snapshot`` (guid ``guid``), in full or as an increment of ``base``, streamed
    straight into ``local`` here, its BEGIN record checked and the whole hashed here.

    Nothing is written on the host (its disk may be the evidence, and a boot
    environment's stream is hundreds of MB); the stream can be no larger than
    the snapshot's logical size, and stops with an error past it.
    """
    local.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with agent_errors(ctx.host, f"sizing {snapshot}"):
        (row,) = client.get([snapshot], ["logicalreferenced"])
    bound = int(row["value"]) * 11 // 10 + STREAM_SLACK if row["value"].isdigit() else STREAM_SLACK
    partial = local.with_suffix(".partial")
    zfs = shlex.quote(client.zfs or "/usr/sbin/zfs")
    increment = f"-i {shlex.quote(base.snapshot)} " if base else ""
    try:
        size = ctx.here.session().fetch(f"{zfs} send -c {increment}{shlex.quote(snapshot)}", str(partial), bound,
                                        timeout=ctx.timeout, large=base is None)
        check_head(partial, guid, base.guid if base else 0)
    except (TransportError, StreamHeaderError) as exc:
        partial.unlink(missing_ok=True)
        raise StepFailed(f"{ctx.host}: copying the stream of {snapshot}: {exc}") from None
    digest = sha256_file(partial)
    partial.replace(local)
    return {"bytes": size, "sha256": digest, "copy": str(local)}


def evidence_snapshot(listing: Listing, ctx: StepContext, dataset: str) -> str:
    """``D@incident-<run>``, or its name after a restore moved it with ``D`` into quarantine."""
    names = SwapNames.for_run(dataset, ctx.run_id)
    if names.quarantine in listing.names:
        return incident_snapshot(ctx, names.quarantine)
    return incident_snapshot(ctx, dataset)


def stream_name(snapshot: str) -> str:
    return snapshot.replace("/", "_") + ".zfs"


def _stream_path(ctx: StepContext, dataset: str) -> Path:
    """Named after the evidence snapshot as taken, before a restore may move it into quarantine."""
    return ctx.run_dir / "evidence" / str(ctx.host) / stream_name(incident_snapshot(ctx, dataset))
