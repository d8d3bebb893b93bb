"""Would a recovery's diffs be slow: access times on a protected dataset.

With ``atime=on`` every file the host reads (every program it runs) rewrites that
file's dnode, and ``zfs diff`` examines every object of each rewritten dnode block,
though it reports none of them. A recovery diffs each protected dataset several times
(`diff`, the newest-clean search, the recheck before `return`), all on its critical
path. Measured on a lab host's boot environment: after 2000 files were read, one diff
took 17 s of kernel time and reported one change; with ``atime=off`` it took 0.1 s.
"""

from __future__ import annotations

from recovery.actions.check.model import Item, passed, warned
from recovery.zfs.client import AgentClient


def atime(client: AgentClient, datasets: list[str]) -> Item:
    """WARN naming every protected dataset whose access times are on (by property or mount option)."""
    if not datasets:
        return passed("atime", "no protected datasets: nothing is diffed")
    value = {row["name"]: row["value"] for row in client.get(datasets, ["atime"])}
    on = [dataset for dataset in datasets if value.get(dataset) != "off"]
    if on:
        return warned("atime", f"access times on for {', '.join(on)}: every file read since golden makes each "
                               "zfs diff of them slower (a recovery diffs each several times)",
                      f"zfs set atime=off {' '.join(on)}")
    return passed("atime", f"access times off on every protected dataset ({len(datasets)})")
