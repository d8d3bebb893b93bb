"""`recover golden verify TARGET`: golden snapshots still as captured and held, stored streams intact."""

from __future__ import annotations

from pathlib import Path

from recovery.config.load import load_inventory
from recovery.config.targets import resolve
from recovery.engine.access import Access
from recovery.zfs import manifest
from recovery.zfs.client import AgentClient


def golden_verify(inventory_path: Path, target: str, store: Path) -> dict[str, list[manifest.Finding]]:
    """Each host's golden snapshots and stored streams against its newest manifest."""
    inventory = load_inventory(inventory_path)
    hosts = resolve(inventory, target).hosts
    access = Access(inventory)
    results: dict[str, list[manifest.Finding]] = {}
    try:
        for host in hosts:
            try:
                golden = manifest.newest(store, host)
            except manifest.ManifestMissing as exc:
                results[host] = [manifest.Finding("golden manifest", False, str(exc))]
                continue
            results[host] = manifest.check(AgentClient(access(host).session(), served=True), golden)
    finally:
        access.close()
    return results
