"""The lab fleet end to end: one `up` of eu-web, us-web and people, then services, history, attacks, `down`.

One fleet serves the whole module (three TCG guests share two cores; it comes
from tests/lab/conftest.py, test_fleet_check used it first), and the tests
run in file order: the history needs the fleet, the attacks need the
history, the last test stops the fleet (the fixture's finalizer stops it
again, which is harmless, if anything failed before).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from recovery.config.inventory import Inventory
from recovery.config.load import load_inventory
from recovery.engine.access import ssh_target
from recovery.lab.attacks import awstats_2005, rsync_2009
from recovery.lab.fleet import Lab
from recovery.lab.fleet_setup import BOOT_ENVIRONMENT, FLEET, MOUNTPOINTS, WEB_HOSTS
from recovery.lab.history import make_history
from recovery.lab.lab_inventory import SITE_MARK
from recovery.lab.recorded import RecordedProcess
from recovery.lab.vm import Guest
from recovery.secrets import resolve
from recovery.traffic.haproxy import HaproxySocket, parse_servers_state, runtime_command
from recovery.transport.ssh import HostKeyRefused, SshSession

pytestmark = pytest.mark.lab

#: System places an intruder writes to; besides the boot environment's diff they are compared as listings.
WATCHED = "/etc/cron.d /etc/crontab /var/spool/cron /usr/sbin /usr/bin /usr/local /root/.ssh /etc/ssh /etc/passwd /etc/shadow /etc/group"
#: Where the data datasets are mounted: their changes are compared whole.
DATA_ROOTS = tuple(m for d, m in MOUNTPOINTS.items() if d != BOOT_ENVIRONMENT)
ZFS_CHANGE = {"+": "added", "M": "modified", "-": "removed", "R": "renamed"}
ZFS_TYPE = {"F": "file", "/": "directory", "@": "symlink"}


@pytest.fixture(scope="module")
def inventory(fleet: Lab) -> Inventory:
    return load_inventory(fleet.inventory_file)


def get(url: str, data: bytes | None = None) -> str:
    with urllib.request.urlopen(url, data=data, timeout=60) as response:
        return response.read().decode()


def test_a_second_up_only_reports(fleet: Lab) -> None:
    before = fleet.record()
    status = fleet.up()
    assert status.running
    assert {c.name for c in status.components} == {"lan", "eu-web", "us-web", "people", "mirror", "dns", "haproxy", "bmc"}
    assert fleet.record()["services"] == before["services"]
    assert fleet.record()["started_at"] == before["started_at"]


def test_guests_answer_ssh_with_the_pinned_keys_of_the_written_inventory(fleet: Lab, inventory: Inventory) -> None:
    for host in FLEET:
        with SshSession(ssh_target(inventory, host.name)) as session:
            assert session.run("hostname").stdout.strip() == host.name.encode()
    impostor = replace(ssh_target(inventory, "eu-web"), host_keys=ssh_target(inventory, "us-web").host_keys)
    with pytest.raises(HostKeyRefused):
        SshSession(impostor).open()


def test_lab_ssh_runs_the_system_ssh_against_the_lab_known_hosts(fleet: Lab) -> None:
    command = [sys.executable, "-c", "from recovery.cli_lab import lab; lab()", "--run-dir", str(fleet.run_dir),
               "ssh", "us-web", "hostname"]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"us-web"


def test_the_inventory_health_checks_pass_and_the_mirror_serves_the_site(fleet: Lab, inventory: Inventory) -> None:
    for name, host in inventory.hosts.items():
        for check in host.health:
            assert check.contains in get(check.url), name
    assert SITE_MARK in get(fleet.record()["services"]["mirror"]["url"])


def test_dns_answers_www_and_accepts_only_signed_updates(inventory: Inventory) -> None:
    config = inventory.services["www"].traffic.dns
    assert config is not None
    query = dns.message.make_query(f"{config.record}.{config.zone}.", "A")
    answer = dns.query.udp(query, config.server, port=config.port, timeout=5)
    assert {r.to_text() for rrset in answer.answer for r in rrset} == {"127.0.0.11", "127.0.0.12"}

    keyring = dns.tsigkeyring.from_text({config.tsig_name: resolve(config.tsig_secret, "TSIG secret")})
    signed = dns.update.UpdateMessage(config.zone, keyring=keyring, keyname=config.tsig_name,
                                      keyalgorithm=config.tsig_algorithm)  # fmt: skip
    signed.add("signed-probe", 60, "A", "127.0.0.9")
    assert dns.query.tcp(signed, config.server, port=config.port, timeout=5).rcode() == dns.rcode.NOERROR
    unsigned = dns.update.UpdateMessage(config.zone)
    unsigned.add("unsigned-probe", 60, "A", "127.0.0.9")
    assert dns.query.tcp(unsigned, config.server, port=config.port, timeout=5).rcode() == dns.rcode.REFUSED


def test_haproxy_serves_the_site_and_drains_a_server_over_its_socket(fleet: Lab, inventory: Inventory) -> None:
    config = inventory.services["www"].traffic.haproxy
    assert config is not None
    assert SITE_MARK in get(fleet.record()["services"]["haproxy"]["url"])
    sock = HaproxySocket(config.socket)

    def states() -> dict[str, str]:
        rows = parse_servers_state(runtime_command(sock, f"show servers state {config.backend}"))
        return {row.server: row.admin_state for row in rows}

    assert states() == {"eu-web": "ready", "us-web": "ready", "mirror": "maint"}
    runtime_command(sock, f"set server {config.backend}/eu-web state drain")
    assert states()["eu-web"] == "drain"
    assert SITE_MARK in get(fleet.record()["services"]["haproxy"]["url"])  # us-web still serves
    runtime_command(sock, f"set server {config.backend}/eu-web state ready")
    assert states()["eu-web"] == "ready"


def test_people_reaches_the_web_servers_over_the_lan_with_a_key_that_only_syncs(fleet: Lab) -> None:
    """The deploy key logs in over the LAN (host keys pinned), and its forced command refuses a shell."""
    people = fleet.guest("people")
    for host in WEB_HOSTS:
        login = (f"ssh -i /root/.ssh/www-sync_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes "
                 f"-o UserKnownHostsFile=/root/.ssh/known_hosts.www-sync root@{host.lan.ip} hostname")  # fmt: skip
        result = people.run(login)
        assert result.exit_code == 1 and b"www-sync-receive: refused" in result.stderr, result.stderr


def test_history_takes_periodic_snapshots_with_ordinary_changes_between(fleet: Lab) -> None:
    events = make_history(fleet)
    assert len(events) == 3
    for host in FLEET:
        names = [event["snapshots"][host.name] for event in events]
        assert len(set(names)) == 3
        listed = set(fleet.guest(host.name).run("zfs list -H -t snapshot -o name").stdout.decode().split())
        assert {f"{d}@{n}" for d in host.datasets for n in names} <= listed
    first, last = events[0]["snapshots"]["eu-web"], events[-1]["snapshots"]["eu-web"]
    assert zfs_changes(fleet.guest("eu-web"), "tank/www/cgi-bin", first, last) == set()
    pages = zfs_changes(fleet.guest("eu-web"), "tank/www/htdocs", first, last)
    assert any(path.endswith(".html") and change == "added" for path, change, _ in pages)


def test_awstats_2005_leaves_exactly_its_ground_truth(fleet: Lab) -> None:
    before = {host.name: listing(fleet.guest(host.name)) for host in FLEET}
    truth = json.loads(awstats_2005(fleet).read_text())
    assert set(truth["hosts"]) == {"eu-web"}
    assert_exactly_the_ground_truth(fleet, truth, before)
    planted = {c["path"]: c for c in truth["hosts"]["eu-web"]["changes"]}
    assert {"/usr/sbin/telnetd", "/srv/www/cgi-bin/awstatstotals.pl", "/etc/cron.d/awstats",
            "/home/webmaster/.ssh/authorized_keys", "/var/log/wtmp"} <= set(planted)  # fmt: skip
    eu_web = fleet.guest("eu-web")
    assert eu_web.run("stat -c %a /usr/sbin/telnetd").stdout.strip() == b"4755"
    assert eu_web.run("stat -c %s /var/log/wtmp").stdout.strip() == b"0"
    backdated = datetime.strptime(planted["/srv/www/cgi-bin/awstatstotals.pl"]["mtime"], "%Y-%m-%d %H:%M:%S %z")
    assert backdated < datetime.fromisoformat(truth["started_at"])
    assert_newest_snapshot_dirty_and_an_older_one_clean(fleet, "eu-web", truth)


def test_rsync_2009_leaves_exactly_its_ground_truth(fleet: Lab) -> None:
    before = {host.name: listing(fleet.guest(host.name)) for host in FLEET}
    truth = json.loads(rsync_2009(fleet).read_text())
    assert set(truth["hosts"]) == {"people", "eu-web", "us-web"}
    assert_exactly_the_ground_truth(fleet, truth, before)
    for host in ("people", "eu-web", "us-web"):
        added = {c["path"] for c in truth["hosts"][host]["changes"] if c["change"] == "added"}
        assert added == {"/srv/www/cgi-bin/mirrors.cgi", "/srv/www/htdocs/.htaccess", "/srv/www/htdocs/closer.cgi"}
        assert_newest_snapshot_dirty_and_an_older_one_clean(fleet, host, truth)
    assert [a["host"] for a in truth["actions"] if "POST" in a["what"]] == ["us-web"]


def test_down_stops_everything_lab_json_records(fleet: Lab) -> None:
    record = fleet.record()
    fleet.down()
    assert not fleet.status().partly_running
    for service in record["services"].values():
        assert not RecordedProcess(service["pid"], service["workdir"]).alive()
        assert not Path(service["workdir"]).exists()
    for state in record["guests"].values():
        assert not fleet.guest(state["name"]).running()


# -- helpers -------------------------------------------------------------------


def zfs_changes(guest: Guest, dataset: str, older: str, newer: str) -> set[tuple[str, str, str]]:
    """``zfs diff -FH`` as (path, change, type); a dataset's root directory loses its trailing slash."""
    result = guest.run(f"zfs diff -FH {dataset}@{older} {dataset}@{newer}")
    assert result.ok, result.stderr
    changes = set()
    for line in result.stdout.decode().splitlines():
        kind, file_type, path = line.split("\t")[:3]
        changes.add((path.rstrip("/"), ZFS_CHANGE[kind], ZFS_TYPE[file_type]))
    return changes


def listing(guest: Guest) -> dict[str, str]:
    """Type, mode, size, mtime and ctime of every watched root file system path (ctime cannot be backdated)."""
    out = guest.run(f"find {WATCHED} -xdev -printf '%p\\t%y %m %s %T@ %C@\\n' 2>/dev/null").stdout.decode()
    return dict(line.split("\t", 1) for line in out.splitlines())


def listing_changes(before: dict[str, str], after: dict[str, str]) -> set[tuple[str, str]]:
    added = {(p, "added") for p in after.keys() - before.keys()}
    removed = {(p, "removed") for p in before.keys() - after.keys()}
    modified = {(p, "modified") for p in before.keys() & after.keys() if before[p] != after[p]}
    return added | removed | modified


def assert_exactly_the_ground_truth(fleet: Lab, truth: dict[str, Any], before: dict[str, dict[str, str]]) -> None:
    """Every protected dataset differs between the attack's snapshots by exactly the listed changes,
    and the watched root file system paths of every host changed exactly as listed."""
    for host in FLEET:
        guest = fleet.guest(host.name)
        entry = truth["hosts"].get(host.name, {"changes": []})
        if host.name in truth["hosts"]:
            seen = set().union(*(
                zfs_changes(guest, d, entry["snapshot_before"], entry["snapshot_after"]) for d in host.datasets
            ))  # fmt: skip
            listed = {(c["path"], c["change"], c["type"]) for c in entry["changes"] if c["dataset"]}
            assert _attack_places(seen) == _attack_places(listed), host.name
        system = {(c["path"], c["change"]) for c in entry["changes"]
                  if c["dataset"] == BOOT_ENVIRONMENT and _watched(c["path"])}  # fmt: skip
        assert listing_changes(before[host.name], listing(guest)) == system, host.name


def _watched(path: str) -> bool:
    return any(path == root or path.startswith(root + "/") for root in WATCHED.split())


def _attack_places(changes: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The changes on the data datasets, and on the boot environment those in the places an intruder
    writes to: a running system also writes its journal, caches and service state there."""
    return {c for c in changes if c[0].startswith(DATA_ROOTS) or _watched(c[0])}


def assert_newest_snapshot_dirty_and_an_older_one_clean(fleet: Lab, host: str, truth: dict[str, Any]) -> None:
    """The snapshot before the attack lacks its files; the one after and the newest have them."""
    entry = truth["hosts"][host]
    planted = next(c for c in entry["changes"] if c["dataset"] and c["change"] == "added")
    dataset = planted["dataset"]
    names = fleet.guest(host).run(f"zfs list -H -t snapshot -o name -s createtxg -d 1 {dataset}").stdout.decode().split()
    newest = names[-1].split("@")[1]
    assert newest != entry["snapshot_after"], "snapshots go on after the compromise"
    mountpoint = fleet.guest(host).run(f"zfs get -H -o value mountpoint {dataset}").stdout.decode().strip().rstrip("/")
    relative = planted["path"][len(mountpoint):]
    for snapshot, present in ((entry["snapshot_before"], False), (entry["snapshot_after"], True), (newest, True)):
        found = fleet.guest(host).run(f"test -e {mountpoint}/.zfs/snapshot/{snapshot}{relative}").ok
        assert found == present, f"{host} {snapshot}: {planted['path']}"
