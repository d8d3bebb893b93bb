"""A realistic timeline on the lab fleet: periodic snapshots with legitimate changes in between.

The golden capture belongs to the product (``recover golden``) and comes
first; this makes the weeks after it. Pages are written on the staging host
and published by its scheduled rsync, the site owner uploads files to his
home, and once the Apache configuration is tuned. After each round every
host takes its periodic snapshot ``auto-N``.

Snapshots are taken by the auto-snapshot job that cron runs hourly on every
host; the commander triggers that same job so a timeline takes seconds rather
than hours (a cron run in between only adds one more snapshot).
"""

from __future__ import annotations

import base64
import json
import shlex
from datetime import UTC, datetime
from typing import Any

from recovery.lab.any_lab import AnyLab
from recovery.lab.fleet_setup import (
    FLEET,
    STAGING,
    WEB_HOSTS,
    checked,
    fleet_host,
    www_sync_command,
)
from recovery.lab.ground_truth import now
from recovery.lab.lab_inventory import SITE_MARK
from recovery.zfs.pipeline import side_by_side

ROUNDS = 3
TUNING = "/etc/apache2/conf-available/lab-tuning.conf"
UPLOADS = "/home/webmaster/uploads"


def make_history(lab: AnyLab, rounds: int = ROUNDS) -> list[dict[str, Any]]:
    """``rounds`` rounds of legitimate changes, each followed by a snapshot on every host."""
    lab.require_running()
    events = []
    for number in range(1, rounds + 1):
        events.append(tick(lab, tune_config=number == 2))
    earlier = json.loads(lab.history_file.read_text()) if lab.history_file.exists() else []
    lab.history_file.write_text(json.dumps(earlier + events, indent=2) + "\n")
    return events


def tick(lab: AnyLab, tune_config: bool = False) -> dict[str, Any]:
    """One round of ordinary work (a page, uploads, maybe a config change), then the snapshots.

    The web hosts work side by side, as their owners would: each TCG guest's SSH round trips are
    seconds, so one host after another would make the timeline the slowest part of a rehearsal.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    changes = [publish_page(lab, f"news-{stamp}.html")]

    def owner_work(host: str) -> list[dict[str, str]]:
        done = [upload(lab, host, f"photo-{stamp}.jpg")]
        if tune_config:
            done.append(tune_apache(lab, host))
        return done

    for done in side_by_side(owner_work, [host.name for host in WEB_HOSTS]):
        changes += done
    return {"at": now(), "changes": changes, "snapshots": snapshot_fleet(lab)}


def auto_snapshot(lab: AnyLab, host: str) -> str:
    """Run the host's auto-snapshot job now; returns the new snapshot name (``auto-N``)."""
    guest = lab.guest(host)
    result = checked(guest, guest.run(fleet_host(host).snapshot_command), "auto-snapshot")
    return result.stdout.decode().strip()


def snapshot_fleet(lab: AnyLab) -> dict[str, str]:
    """Every host's auto-snapshot job at once (each takes its own snapshots)."""
    names = [host.name for host in FLEET]
    return dict(zip(names, side_by_side(lambda name: auto_snapshot(lab, name), names)))


def publish_page(lab: AnyLab, name: str) -> dict[str, str]:
    """A new page written on the staging host and carried to the web servers by www-sync."""
    page = f"<!DOCTYPE html>\n<html><head><title>{SITE_MARK}</title></head><body><p>News {name}</p></body></html>\n"
    path = f"/srv/www/htdocs/{name}"
    _write(lab, STAGING.name, path, page.encode(), mode="664")
    people = lab.guest(STAGING.name)
    checked(people, people.run(www_sync_command(), timeout=300), "www-sync")
    return {"at": now(), "host": STAGING.name, "path": path, "what": "page published (www-sync)"}


def upload(lab: AnyLab, host: str, name: str) -> dict[str, str]:
    """The site owner uploads a file into his home (on the ``tank/home`` dataset)."""
    path = f"{UPLOADS}/{name}"
    _write(lab, host, path, b"\xff\xd8\xff\xe0 lab photo " + name.encode() + b"\n", mode="644", owner="webmaster")
    return {"at": now(), "host": host, "path": path, "what": "upload"}


def tune_apache(lab: AnyLab, host: str) -> dict[str, str]:
    """A configuration change on ``tank/apache``: hide version details, then reload Apache."""
    text = "# Site tuning: say less about the server.\nServerTokens Prod\nServerSignature Off\n"
    _write(lab, host, TUNING, text.encode(), mode="644")
    guest = lab.guest(host)
    checked(guest, guest.run("a2enconf -q lab-tuning && systemctl reload apache2"), "enabling lab-tuning")
    return {"at": now(), "host": host, "path": TUNING, "what": "Apache configuration tuned"}


def _write(lab: AnyLab, host: str, path: str, data: bytes, mode: str, owner: str = "") -> None:
    guest = lab.guest(host)
    encoded = base64.b64encode(data).decode()
    target = shlex.quote(path)
    command = f"printf %s {encoded} | base64 -d >{target} && chmod {mode} {target}"
    if owner:
        command += f" && chown {owner}:{owner} {target}"
    checked(guest, guest.run(command), f"writing {path}")
