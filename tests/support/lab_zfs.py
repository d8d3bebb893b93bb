"""A lab guest with protected ZFS datasets, a history and an intrusion, for the lab tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from recovery.lab.vm import Guest

DATASETS = ["tank/www/htdocs", "tank/www/cgi-bin", "tank/data/uploads"]

SETUP = """
set -e
modprobe zfs
zpool create -f -O mountpoint=none tank /dev/disk/by-id/virtio-TANK0
mkdir -p /srv/www/htdocs /srv/www/cgi-bin
zfs create -p -o mountpoint=/srv/www/htdocs tank/www/htdocs
zfs create -o mountpoint=/srv/www/cgi-bin tank/www/cgi-bin
zfs create -o mountpoint=/srv/data tank/data
zfs create tank/data/uploads
echo '<h1>Welcome</h1>' > /srv/www/htdocs/index.html
printf '#!/bin/sh\\necho stats\\n' > /srv/www/cgi-bin/stats.cgi && chmod 755 /srv/www/cgi-bin/stats.cgi
"""

HISTORY = """
set -e
snap() { zfs snapshot tank/www/htdocs@$1 tank/www/cgi-bin@$1 tank/data/uploads@$1; }
echo news > /srv/www/htdocs/news.html; snap auto-1
echo photo > /srv/data/uploads/photo.jpg; snap auto-2
printf '#!/bin/sh\\neval "$QUERY_STRING"\\n' > /srv/www/cgi-bin/shell.cgi
chmod 755 /srv/www/cgi-bin/shell.cgi && touch -d 2004-01-01 /srv/www/cgi-bin/shell.cgi
snap auto-3
echo late > /srv/www/htdocs/late.html; echo fresh > /srv/www/cgi-bin/notes.txt; snap auto-4
echo later > /srv/data/uploads/later.txt
"""

def write_inventory(path: Path, guest: Guest, name: str = "zfs-web", extra: str = "") -> None:
    """An inventory with the guest as host ``name``; ``extra`` is appended inside its table."""
    key_type, key = guest.host_key.split()[:2]
    path.write_text(f"""
[hosts.{name}]
address = "127.0.0.1"
role = "web"
datasets = {json.dumps(DATASETS)}
root_password = "file:{guest.image.root_password_file}"
{extra}
[hosts.{name}.ssh]
port = {guest.ssh_port}
key = "{guest.image.operator_key}"
host_key = "{key_type} {key}"
""")


def zfs(guest: Guest, args: str) -> str:
    result = guest.run(f"zfs {args}", timeout=120)
    assert result.ok, result.stderr
    return result.stdout.decode()


def outputs(run_dir: Path, step: str) -> dict:
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        rows = db.execute("SELECT data FROM records WHERE event='step_succeeded' AND step=?", (step,)).fetchall()
    return json.loads(rows[-1][0])["outputs"]
