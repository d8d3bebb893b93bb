"""`verify`: compare the host's tools and critical files with its golden manifest.

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

from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.golden import GoldenParams, store_dir
from recovery.steps.zfs_host import agent, agent_errors
from recovery.zfs import manifest
from recovery.zfs.client import AgentClient


class VerifyParams(GoldenParams):
    strict: bool = Field(False, description="Fail on changed critical files too, not only on changed tools.")


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


@register
class VerifyStep(StepKind):
    kind = "verify"
    summary = "check the host's tools and critical files against the golden manifest"
    Params = VerifyParams
    Outputs = VerifyOutputs
    repeatable = True  # read-only

    def apply(self, ctx: StepContext) -> VerifyOutputs:
        golden = newest_manifest(store_dir(ctx.params), str(ctx.host))
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
