"""The lab fleet's bookkeeping without VMs: the written inventory, ground truth, recorded processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recovery.config.load import load_inventory
from recovery.lab.fleet import Lab, LabError
from recovery.lab.fleet_setup import FLEET, fleet_host
from recovery.lab.ground_truth import ADDED, MODIFIED, GroundTruth, dataset_of
from recovery.lab.lab_inventory import GuestFacts, OobFacts, ServiceFacts, inventory_text
from recovery.lab.recorded import RecordedProcess

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMwC+RrwulInERe6AQ6mF6LE/4AUwR5tEvHgkDQTfEep"


def lab_inventory(tmp_path: Path) -> Path:
    """The inventory `recover lab up` writes, for made-up ports and keys."""
    guests = {h.name: GuestFacts(2200 + h.number, 8000 + h.number, f"{KEY} root@{h.name}",
                                 "127.0.0.11" if h.name == "eu-web" else None) for h in FLEET}
    services = ServiceFacts(
        dns_port=5353, zone="lab.test", record="www", tsig_name="recovery-lab-key", tsig_algorithm="hmac-sha256",
        tsig_secret_file=str(tmp_path / "tsig.secret"), mirror_address="127.0.0.4",
        haproxy_socket=str(tmp_path / "admin.sock"), haproxy_backend="web", mirror_server="mirror",
    )  # fmt: skip
    path = tmp_path / "inventory.toml"
    oob = OobFacts(2299, "root", "/keys/bmc", f"{KEY} bmc")
    passwords = {h.name: f"/keys/root-password-{h.name}" for h in FLEET}
    path.write_text(inventory_text(guests, services, "/keys/operator", passwords, oob))
    return path


def test_the_lab_inventory_loads_with_pins_health_checks_and_secret_references(tmp_path: Path) -> None:
    inventory = load_inventory(lab_inventory(tmp_path))
    assert set(inventory.hosts) == {"eu-web", "us-web", "people"}
    eu_web = inventory.hosts["eu-web"]
    assert eu_web.ssh.host_key == KEY and eu_web.ssh.port == 2211
    assert eu_web.oob is not None and eu_web.oob.driver == "lab" and eu_web.oob.machine == "eu-web"
    assert eu_web.oob.ssh.port == 2299 and eu_web.oob.ssh.host_key == KEY
    assert eu_web.health[0].url == "http://127.0.0.1:8011/"
    assert eu_web.public_address == "127.0.0.11" and inventory.hosts["people"].public_address is None
    assert inventory.hosts["people"].datasets == list(fleet_host("people").datasets)
    assert {h.root_password for h in inventory.hosts.values()} == {f"file:/keys/root-password-{h.name}" for h in FLEET}
    dns = inventory.services["www"].traffic.dns
    assert dns is not None and dns.tsig_secret == f"file:{tmp_path / 'tsig.secret'}"


def test_dataset_of_picks_the_deepest_protected_mountpoint() -> None:
    assert dataset_of("eu-web", "/srv/www/cgi-bin/x.pl") == "tank/www/cgi-bin"
    assert dataset_of("eu-web", "/srv/www/cgi-bin") == "tank/www/cgi-bin"
    assert dataset_of("eu-web", "/etc/apache2/conf-available/a.conf") == "tank/apache"
    assert dataset_of("people", "/etc/apache2/apache2.conf") == "rpool/ROOT/debian"  # the system holds it there
    assert dataset_of("eu-web", "/srv/www/cgi-binary") == "rpool/ROOT/debian"
    assert dataset_of("eu-web", "/usr/sbin/telnetd") == "rpool/ROOT/debian"  # root on ZFS: covered too


def test_ground_truth_lists_the_directory_an_added_entry_modifies(tmp_path: Path) -> None:
    truth = GroundTruth("demo", "seed.txt")
    truth.changed("eu-web", "/srv/www/cgi-bin/a.pl", ADDED, "webshell")
    truth.changed("eu-web", "/srv/www/cgi-bin/b.pl", ADDED, "webshell")
    truth.changed("eu-web", "/home/webmaster/.ssh/authorized_keys", MODIFIED, "key")
    written = json.loads(truth.write(tmp_path).read_text())
    changes = [(c["path"], c["change"], c["type"], c["dataset"]) for c in written["hosts"]["eu-web"]["changes"]]
    assert changes == [
        ("/srv/www/cgi-bin/a.pl", "added", "file", "tank/www/cgi-bin"),
        ("/srv/www/cgi-bin", "modified", "directory", "tank/www/cgi-bin"),
        ("/srv/www/cgi-bin/b.pl", "added", "file", "tank/www/cgi-bin"),
        ("/home/webmaster/.ssh/authorized_keys", "modified", "file", "tank/home"),
    ]


def test_a_recorded_process_is_signalled_only_while_its_proof_is_on_its_command_line(tmp_path: Path) -> None:
    proof = str(tmp_path / "workdir")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", proof])
    deadline = time.monotonic() + 5
    while proof.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # Popen returns before the child has exec'd sleep
    try:
        assert not RecordedProcess(process.pid, "/somewhere/else").alive()
        RecordedProcess(process.pid, "/somewhere/else").stop()
        assert process.poll() is None  # not ours by the record: left alone
        mine = RecordedProcess(process.pid, proof)
        assert mine.alive()
        mine.stop()
        assert process.wait(5) is not None
    finally:
        process.kill()
        process.wait()


def test_a_lab_never_started_reports_nothing_and_refuses_guest_access(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "run")
    assert lab.status().components == ()
    lab.down()
    with pytest.raises(LabError):
        lab.guest("eu-web")
    with pytest.raises(LabError):
        lab.require_running()


def test_a_rehearsal_result_as_json_carries_every_check_and_the_rto() -> None:
    import json

    from recovery.rehearsal import TRAFFIC_BACK, Check, Rehearsal

    result = Rehearsal("eu-web", "rootkit", run_id="R1", checks=[Check("journal verify", True, "chain intact"),
                                                                  Check("eu-web: nothing left", False, "telnetd")],
                       timings={"recover": 380.2, TRAFFIC_BACK: 301.5})
    shown = json.loads(json.dumps(result.as_dict()))
    assert shown["passed"] is False and shown["rto"] == 301.5 and shown["run"] == "R1"
    assert shown["checks"][1] == {"name": "eu-web: nothing left", "passed": False, "detail": "telnetd"}


def test_a_reused_lab_keeps_golden_images_only_when_every_host_of_the_service_has_one(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from recovery.rehearsal import kept_golden

    lab = SimpleNamespace(inventory_file=lab_inventory(tmp_path))
    store = tmp_path / "golden-store"
    (store / "eu-web").mkdir(parents=True)
    (store / "eu-web" / "golden-20261201T000000Z.json").write_text("{}")
    assert kept_golden(lab, store) == ""  # us-web has none: the rehearsal captures the service again
    (store / "us-web").mkdir()
    for name in ("golden-20261201T000000Z.json", "golden-20261202T000000Z.json"):
        (store / "us-web" / name).write_text("{}")
    assert kept_golden(lab, store) == "eu-web golden-20261201T000000Z, us-web golden-20261202T000000Z"
