"""Golden manifests in the golden store, and checking a host against one.

A manifest (written by the `golden_capture` step) records, per dataset, the
golden snapshot's name, guid and createtxg and its stream's sha256 in the
store; and the sha256 of the host's tools and critical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recovery.zfs.client import AgentClient, Dataset


def store_path(explicit: str | Path | None = None) -> Path:
    """The golden store: as given, else ``$RECOVERY_GOLDEN_STORE``, else ``./golden-store`` (absolute)."""
    return Path(explicit or os.environ.get("RECOVERY_GOLDEN_STORE") or "golden-store").absolute()


class ManifestMissing(Exception):
    pass


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str


def manifest_files(store: Path, host: str) -> list[Path]:
    """The host's golden manifests in the store, oldest first (their names carry the UTC time)."""
    return sorted((store / host).glob("golden-*.json"))


def newest(store: Path, host: str) -> dict[str, Any]:
    manifests = manifest_files(store, host)
    if not manifests:
        raise ManifestMissing(f"{host}: no golden manifest in {store / host}: capture one with `recover golden {host}`")
    return json.loads(manifests[-1].read_text())


def check(client: AgentClient, manifest: dict[str, Any], hash_streams: bool = True) -> list[Finding]:
    """Do the golden snapshots still exist as captured, held, and do their stored streams still hash right?

    Without ``hash_streams`` a stored stream is only looked for, not read: a
    quick readiness check, where hashing whole datasets would take minutes.
    """
    findings = []
    for dataset, golden in manifest["datasets"].items():
        snapshot = golden["snapshot"]
        rows = [r for r in client.list_datasets(dataset, types=("snapshot",)) if r.name == snapshot]
        same = as_captured(golden, rows)
        findings.append(Finding(f"{snapshot} as captured", same,
                                "guid and createtxg match" if same else "missing, or its guid/createtxg differ"))
        if rows:
            held = "recovery-golden" in client.holds(snapshot)
            findings.append(Finding(f"{snapshot} held", held, "recovery-golden hold" if held else "no golden hold"))
        findings.append(_stream(golden["stream"], snapshot, hash_streams))
    return findings


def as_captured(golden: dict[str, Any], snapshots: Iterable[Dataset]) -> bool:
    """Whether the golden snapshot a manifest entry names is among ``snapshots`` with the guid and
    createtxg it was captured with (a destroyed name can be taken again, a guid not)."""
    found = [s for s in snapshots if s.name == golden["snapshot"]]
    return bool(found) and (found[0].guid, found[0].createtxg) == (golden["snapshot_guid"], golden["createtxg"])


def sha256_file(path: Path) -> str:
    """The sha256 of a stream copy here, read a MiB at a time (streams hold whole datasets)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream(stream: dict[str, Any], snapshot: str, hash_streams: bool = True) -> Finding:
    path = Path(stream["copy"])
    if not path.is_file():
        return Finding(f"{snapshot} stream", False, f"{path} is missing from the golden store")
    if not hash_streams:
        return Finding(f"{snapshot} stream", True, "present (not hashed)")
    ok = sha256_file(path) == stream["sha256"]
    return Finding(f"{snapshot} stream", ok, "sha256 matches" if ok else f"sha256 of {path} differs from the manifest")
