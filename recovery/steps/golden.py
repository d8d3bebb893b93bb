"""`golden_capture`: the known-good state of a host, captured before it goes live.

An atomic snapshot ``@golden-<UTC>`` of the protected datasets, held with
``recovery-golden``; each snapshot sent as a stream into the golden store on
the commander (default ``./golden-store``, or ``RECOVERY_GOLDEN_STORE``) with
its sha256; and a manifest beside them: dataset and snapshot guids and
createtxg, sha256 of the files under the critical paths, and of the tools
recovery will later trust on that host (zfs, zpool, python3, libzfs_core).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.preserve import copy_stream, stream_name
from recovery.steps.zfs_host import (
    GOLDEN_HOLD,
    GOLDEN_PREFIX,
    agent,
    agent_errors,
    protected,
    snapshots,
)
from recovery.zfs import manifest

TOOLS = ("/usr/sbin/zfs", "/usr/sbin/zpool", "/usr/bin/python3",
         "/usr/lib/python3/dist-packages/libzfs_core")


class GoldenParams(Strict):
    store: str | None = Field(None, description="Golden store directory [default: $RECOVERY_GOLDEN_STORE or ./golden-store].")
    critical_paths: list[str] = Field(
        default_factory=lambda: ["/etc/apache2", "/etc/ssh", "/etc/cron.d", "/usr/local/bin"],
        description="Files hashed into the manifest (the datasets' mountpoints are always added).")


def store_dir(params: GoldenParams) -> Path:
    return manifest.store_path(params.store)


class GoldenOutputs(StepOutputs):
    snapshot: str = ""
    manifest: str = ""
    datasets: list[str] = Field(default_factory=list)


@register
class GoldenCaptureStep(StepKind):
    kind = "golden_capture"
    summary = "snapshot @golden-<UTC>, hold it, store streams and a manifest off-host"
    Params = GoldenParams
    Outputs = GoldenOutputs

    def check(self, ctx: StepContext) -> Check:
        return Check.DONE if _manifest_path(ctx).is_file() else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> GoldenOutputs:
        client = agent(ctx)
        tag = f"{GOLDEN_PREFIX}{_stamp(ctx)}"
        names = [f"{d}@{tag}" for d in protected(ctx)]
        with agent_errors(ctx.host, "capturing golden snapshots"):
            existing = {s.name for d in protected(ctx) for s in snapshots(client, d)}
            if missing := [n for n in names if n not in existing]:
                client.snapshot(missing)
            client.hold({n: GOLDEN_HOLD for n in names})
            captured = self._manifest(ctx, client, names)
        path = _manifest_path(ctx)
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(captured, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        ctx.note(f"golden {tag}: {len(names)} datasets, {len(captured['files'])} files, manifest {path}")
        return GoldenOutputs(snapshot=tag, manifest=str(path), datasets=list(captured["datasets"]))

    def _manifest(self, ctx: StepContext, client: Any, names: list[str]) -> dict[str, Any]:
        datasets = {}
        for name in names:
            dataset = name.split("@")[0]
            (snap,) = [s for s in snapshots(client, dataset) if s.name == name]
            guid = client.get([dataset], ["guid"])[0]["value"]
            stream = copy_stream(ctx, client, name, _host_dir(ctx) / stream_name(name), snap.guid)
            datasets[dataset] = {"guid": guid, "snapshot": name, "snapshot_guid": snap.guid,
                                 "createtxg": snap.createtxg, "stream": stream}
        pool = names[0].split("/")[0]
        files, complete = client.hashes([p.encode() for p in self._critical(ctx, client)])
        tools, _ = client.hashes([t.encode() for t in TOOLS])
        if not tools:
            raise StepFailed(f"{ctx.host}: none of the tools {', '.join(TOOLS)} could be hashed")
        return {"host": ctx.host, "captured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pool": pool, "pool_guid": client.get([pool], ["guid"])[0]["value"],
                "datasets": datasets, "files_complete": complete,
                "files": {p.decode("utf-8", "backslashreplace"): h for p, h in files.items()},
                "tools": {p.decode("utf-8", "backslashreplace"): h for p, h in tools.items()}}

    def _critical(self, ctx: StepContext, client: Any) -> list[str]:
        """The critical paths and the data datasets' mountpoints; a boot environment (``/``) is
        compared with its golden snapshot by ``zfs diff`` instead of a hash of every file."""
        mounts = [row["value"] for row in client.get(protected(ctx), ["mountpoint"])
                  if row["value"].startswith("/") and row["value"] != "/"]
        return [*ctx.params.critical_paths, *mounts]


def _stamp(ctx: StepContext) -> str:
    """The run's start time names the golden snapshot, so a resumed capture finds its own."""
    return ctx.run_id.split("-", 1)[0]


def _host_dir(ctx: StepContext) -> Path:
    return store_dir(ctx.params) / str(ctx.host)


def _manifest_path(ctx: StepContext) -> Path:
    return _host_dir(ctx) / f"golden-{_stamp(ctx)}.json"
