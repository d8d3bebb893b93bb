"""Is there something to restore to: a verified golden image, a snapshot within the RPO, a schedule making more?"""

from __future__ import annotations

import time
from pathlib import Path

from recovery.actions.check import parsers
from recovery.actions.check.model import Item, failed, passed, warned
from recovery.actions.check.remote import Runs, output, read_files
from recovery.config.inventory import Host, duration_seconds
from recovery.errors import AdapterError
from recovery.zfs import manifest
from recovery.zfs.client import AgentClient

#: Snapshots a run takes as evidence: not restore points.
EVIDENCE_PREFIX = "incident-"
CRONTABS = ["/etc/crontab", "/etc/cron.d/*", "/var/spool/cron/crontabs/*", "/var/spool/cron/*"]
AGENT_TIMEOUT = 60.0


def agent(session: Runs, name: str) -> AgentClient:
    return AgentClient(session, timeout=AGENT_TIMEOUT, host=name, served=True)


def golden(client: AgentClient, name: str, store: Path, deep: bool) -> Item:
    """The newest golden manifest's snapshots exist as captured and held; streams present (hashed with --deep)."""
    try:
        findings = manifest.check(client, manifest.newest(store, name), hash_streams=deep)
    except manifest.ManifestMissing as exc:
        return failed("golden", str(exc), f"capture one before the host goes live: `recover golden {name}`")
    except AdapterError as exc:
        return failed("golden", str(exc), "check the host's ZFS and the agent (python3, libzfs_core)")
    bad = [f"{f.what}: {f.detail}" for f in findings if not f.ok]
    if bad:
        return failed("golden", "; ".join(bad[:4]), f"find out what changed the golden state; "
                                                    f"`recover golden verify {name}` shows every finding")
    return passed("golden", f"{len(findings)} finding(s) ok" + ("" if deep else " (streams not hashed; --deep hashes)"))


def newest_snapshots(client: AgentClient, datasets: list[str]) -> dict[str, int | None]:
    """Each protected dataset's newest restore point (creation time), evidence snapshots left out."""
    rows = client.list_datasets(None, types=("snapshot",))
    newest: dict[str, int | None] = {d: None for d in datasets}
    for row in rows:
        dataset, _, short = row.name.partition("@")
        if dataset in newest and not short.startswith(EVIDENCE_PREFIX):
            newest[dataset] = max(newest[dataset] or 0, row.creation)
    return newest


def rpo(newest: dict[str, int | None], host: Host, now: float | None = None) -> Item:
    """The oldest of the datasets' newest snapshots is younger than the host's RPO."""
    if not newest:
        return warned("snapshots", "no protected datasets in the inventory", "list them in datasets = [...]")
    missing = [d for d, created in newest.items() if created is None]
    if missing:
        return failed("snapshots", f"no snapshot of {', '.join(missing)}", "schedule snapshots of every protected dataset")
    now = time.time() if now is None else now
    dataset, created = min(newest.items(), key=lambda pair: pair[1] or 0)
    age = max(0, int(now - (created or 0)))
    if host.check.rpo is None:
        return warned("snapshots", f"newest snapshot of {dataset} is {_age(age)} old; no RPO set",
                      "set check.rpo (e.g. '2h') so the age is judged")
    if age > duration_seconds(host.check.rpo):
        return failed("snapshots", f"newest snapshot of {dataset} is {_age(age)} old, older than the RPO {host.check.rpo}",
                      "find out why the snapshot job stopped (see snapshot-schedule) and take one now")
    return passed("snapshots", f"newest snapshot of every dataset within the RPO {host.check.rpo} (oldest {_age(age)})")


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


def schedule(session: Runs, host: Host) -> Item:
    """A cron line or a systemd timer runs one of the inventory's snapshot jobs.

    A line naming the job but commented out does not count: it is reported as such.
    """
    files = read_files(session, CRONTABS)
    files["systemctl list-timers"] = output(session, "systemctl list-timers --all --no-legend --no-pager 2>/dev/null")
    lines = parsers.schedule_lines(files, host.check.snapshot_jobs)
    active = [line for line in lines if line.active]
    if active:
        return passed("snapshot-schedule", "; ".join(f"{line.file}:{line.line} {line.text}" for line in active[:2]))
    jobs = ", ".join(host.check.snapshot_jobs)
    if lines:
        return failed("snapshot-schedule", f"{lines[0].file}:{lines[0].line} names the job but is commented out",
                      f"uncomment it (or schedule {jobs} with a systemd timer)")
    return failed("snapshot-schedule", f"no cron line or systemd timer runs {jobs}",
                  "schedule the snapshot job (cron.d line or systemd timer) at least as often as the RPO")


