"""Golden capture, preserve, diff, find_clean and restore through `recover`, on real OpenZFS.

A guest gets a pool with three protected datasets (two with a local
mountpoint, one inheriting it), a golden capture, a history of legitimate
changes with periodic snapshots, an intrusion (a backdated CGI webshell) and
more snapshots after it. Then `recover` restores the newest clean snapshot.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest

from recovery.lab.vm import Guest
from recovery.transport.ssh import SshSession
from tests.support.lab_zfs import DATASETS, HISTORY, SETUP, outputs, write_inventory, zfs
from tests.support.project import recover

pytestmark = pytest.mark.lab

RECOVER = """
[[steps]]
kind = "preserve"
[[steps]]
kind = "diff"
[[steps]]
kind = "find_clean"
params = { exhaustive = true }
[[steps]]
kind = "restore"
confirm = true
[[steps]]
kind = "verify"
[[steps]]
kind = "preserve"
name = "evidence-still-held"
"""


@pytest.fixture(scope="module")
def web(boot_guest: Callable[..., Guest]) -> Guest:
    guest = boot_guest("zfs-web")
    guest.wait_for_ssh(300)
    setup = guest.run(SETUP, timeout=300)
    assert setup.ok, setup.stderr
    return guest


def test_golden_then_restore_newest_clean(web: Guest, tmp_path: Path) -> None:
    write_inventory(tmp_path / "inventory.toml", web)
    (tmp_path / "golden.toml").write_text('[[steps]]\nkind = "golden_capture"\n')
    (tmp_path / "recover.toml").write_text(RECOVER)
    env = {"RECOVERY_GOLDEN_STORE": str(tmp_path / "golden-store")}

    golden = recover("golden", "zfs-web", "--inventory", "inventory.toml", "--playbook", "golden.toml",
                     "--runs-dir", "runs", "--yes", cwd=tmp_path, env=env, timeout=600)
    assert golden.returncode == 0, golden.stdout + golden.stderr
    (manifest_path,) = (tmp_path / "golden-store" / "zfs-web").glob("golden-*.json")
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["datasets"]) == set(DATASETS)
    assert "/srv/www/cgi-bin/stats.cgi" in manifest["files"]
    assert "/usr/sbin/zfs" in manifest["tools"]
    verified = recover("golden", "verify", "zfs-web", "--inventory", "inventory.toml", cwd=tmp_path, env=env)
    assert verified.returncode == 0 and verified.stdout.count("PASS") == 3 * len(DATASETS), verified.stdout
    stream = Path(manifest["datasets"]["tank/data/uploads"]["stream"]["copy"])
    original = stream.read_bytes()
    stream.write_bytes(original + b"x")
    tampered = recover("golden", "verify", "zfs-web", "--inventory", "inventory.toml", cwd=tmp_path, env=env)
    assert tampered.returncode == 1 and "differs from the manifest" in tampered.stdout
    stream.write_bytes(original)
    golden_snap = manifest["datasets"]["tank/www/cgi-bin"]["snapshot"]
    assert "recovery-golden" in zfs(web, f"holds -H {golden_snap}")

    history = web.run(HISTORY, timeout=300)
    assert history.ok, history.stderr
    before = set(zfs(web, "list -H -t all -o name").split())

    result = recover("zfs-web", "--inventory", "inventory.toml", "--playbook", "recover.toml",
                     "--runs-dir", "runs", "--yes", cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = max((tmp_path / "runs").iterdir())
    run_id = run_dir.name

    found = outputs(run_dir, "diff")["datasets"]["tank/www/cgi-bin"]["findings"]
    assert any(f["path"] == "/srv/www/cgi-bin/shell.cgi" and f["verdict"] == "indicator" for f in found)
    chosen = outputs(run_dir, "find_clean")["datasets"]
    assert chosen["tank/www/cgi-bin"]["clean"] == "tank/www/cgi-bin@auto-2"
    assert chosen["tank/www/htdocs"]["clean"] is None  # no indicator there: left alone
    lost = [f["path"] for f in chosen["tank/www/cgi-bin"]["lost"]["benign"]]
    assert "/srv/www/cgi-bin/shell.cgi" not in lost

    still_held = outputs(run_dir, "evidence-still-held")  # found in quarantine, described from the host
    assert still_held["already_done"] is True
    assert all(name.startswith("tank/www/cgi-bin.quarantine-") or "quarantine" not in name
               for name in still_held["snapshots"]) and len(still_held["snapshots"]) == len(DATASETS)
    verified = outputs(run_dir, "verify")
    assert verified["tools"] >= 3 and verified["files_differing"] == []

    live = web.run("ls /srv/www/cgi-bin /srv/www/htdocs /srv/data/uploads").stdout.decode()
    assert "shell.cgi" not in live and "stats.cgi" in live and "late.html" in live
    quarantine = f"tank/www/cgi-bin.quarantine-{run_id}"
    props = zfs(web, f"get -H -o value readonly,canmount,mounted {quarantine}").split()
    assert props == ["on", "off", "no"]
    assert "recovery-evidence" in zfs(web, f"holds -H {quarantine}@incident-{run_id}")
    assert zfs(web, "get -H -o value mountpoint,mounted tank/www/cgi-bin").split() == ["/srv/www/cgi-bin", "yes"]
    evidence = outputs(run_dir, "preserve")["snapshots"]
    assert len(evidence) == len(DATASETS)
    for name, record in evidence.items():
        copy = run_dir / record["stream"]
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == record["sha256"]
        golden_of = manifest["datasets"][name.split("@")[0]]
        assert (record["base"], record["base_sha256"]) == (golden_of["snapshot"], golden_of["stream"]["sha256"])
    assert received(web, evidence, run_dir) == {name: record["guid"] for name, record in evidence.items()}

    after = set(zfs(web, "list -H -t all -o name").split())
    moved = {n: n.replace("tank/www/cgi-bin@", f"{quarantine}@") for n in before}
    lost = [n for n, m in moved.items() if n not in after and m not in after]
    assert lost == [], "datasets or snapshots disappeared"

    refused = recover("salvage", run_id, "zfs-web", "/srv/www/cgi-bin/shell.cgi", "--runs-dir", "runs",
                      "--yes", cwd=tmp_path, timeout=300)
    assert refused.returncode == 2 and "is an indicator of compromise: not salvaged" in refused.stderr
    forced = recover("salvage", run_id, "zfs-web", "/srv/www/cgi-bin/notes.txt", "--force", "--runs-dir", "runs",
                     "--yes", cwd=tmp_path, timeout=300)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert web.run("cat /srv/www/cgi-bin/notes.txt").stdout == b"fresh\n"
    assert "shell.cgi" not in web.run("ls /srv/www/cgi-bin").stdout.decode()

    undone = recover("undo", run_id, "zfs-web", "--runs-dir", "runs", "--yes", cwd=tmp_path, timeout=300)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "shell.cgi" in web.run("ls /srv/www/cgi-bin").stdout.decode()  # the pre-restore state again
    assert zfs(web, f"get -H -o value readonly,mounted tank/www/cgi-bin.restored-{run_id}").split() == ["on", "no"]
    redo = recover("retry", run_id, "--host", "zfs-web", "--step", "restore", "--runs-dir", "runs",
                   "--yes", cwd=tmp_path, timeout=300)
    assert redo.returncode == 2 and "is done, not failed" in redo.stderr

    again = recover("resume", run_id, "--runs-dir", "runs", "--yes", cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0 and "already recorded" in again.stdout
    retry_state = recover("journal", "verify", run_id, "--runs-dir", "runs", cwd=tmp_path)
    assert retry_state.returncode == 0, retry_state.stderr


def received(web: Guest, evidence: dict[str, dict], run_dir: Path) -> dict[str, int]:
    """Each evidence snapshot as a forensic examiner rebuilds it: golden's full stream from the golden store,
    then the evidence increment, received on the guest into a new file system; name -> the guid received."""
    guids = {}
    with SshSession(web.ssh_target()) as session:
        for number, (name, record) in enumerate(sorted(evidence.items())):
            session.put(record["base_stream"], f"/root/golden-{number}.zfs")
            session.put(str(run_dir / record["stream"]), f"/root/evidence-{number}.zfs")
            into = f"tank/forensic/{number}"
            rebuilt = web.run(f"zfs create -p -o mountpoint=none tank/forensic && "
                              f"zfs recv -u {into} < /root/golden-{number}.zfs && "
                              f"zfs recv -u {into} < /root/evidence-{number}.zfs && "
                              f"zfs get -Hp -o value guid {into}@{name.split('@')[1]}", timeout=120)
            assert rebuilt.ok, rebuilt.stderr
            guids[name] = int(rebuilt.stdout.decode())
    return guids
