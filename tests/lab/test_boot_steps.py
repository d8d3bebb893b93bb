"""The 2009 way, through `recover`: contain, boot single-user over the lab BMC, restore over the
serial console, boot normal, copy the evidence over SSH — on a real OpenZFS guest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from recovery.lab.bmc import LabBmc
from recovery.lab.vm import Guest
from recovery.oob.base import PowerState
from recovery.oob.lab import LabDriver
from tests.support.lab_zfs import HISTORY, SETUP, outputs, write_inventory, zfs
from tests.support.project import recover

pytestmark = pytest.mark.lab

RECOVER = """
[[steps]]
kind = "contain"
confirm = true
[[steps]]
kind = "boot_single"
timeout = 400
[[steps]]
kind = "preserve"
params = { copy_streams = false }
[[steps]]
kind = "diff"
[[steps]]
kind = "find_clean"
[[steps]]
kind = "restore"
confirm = true
[[steps]]
kind = "boot_normal"
timeout = 400
[[steps]]
kind = "preserve"
name = "evidence-copy"
"""


@pytest.fixture(scope="module")
def machine(bmc_guest: Callable[[str], Guest]) -> Guest:
    return bmc_guest("boot-web")


def test_single_user_recovery_over_the_console(lab_bmc: LabBmc, machine: Guest, bmc_key: Path,
                                               tmp_path: Path) -> None:
    driver = LabDriver(lab_bmc.endpoint("boot-web", machine.name, bmc_key))
    driver.power_on()
    assert _booted(machine).run(SETUP, timeout=300).ok
    oob = (f'[hosts.boot-web.oob]\ndriver = "lab"\nmachine = "{machine.name}"\n'
           f'[hosts.boot-web.oob.ssh]\nport = {lab_bmc.port}\nuser = "{lab_bmc.user}"\nkey = "{bmc_key}"\n'
           f'host_key = "{lab_bmc.host_key}"\n')
    write_inventory(tmp_path / "inventory.toml", _booted(machine), "boot-web")
    (tmp_path / "inventory.toml").write_text((tmp_path / "inventory.toml").read_text() + oob)
    (tmp_path / "golden.toml").write_text('[[steps]]\nkind = "golden_capture"\n')
    (tmp_path / "recover.toml").write_text(RECOVER)
    env = {"RECOVERY_GOLDEN_STORE": str(tmp_path / "golden-store")}
    common = ["--inventory", "inventory.toml", "--runs-dir", "runs", "--yes"]
    golden = recover("golden", "boot-web", "--playbook", "golden.toml", *common, cwd=tmp_path, env=env, timeout=600)
    assert golden.returncode == 0, golden.stdout + golden.stderr
    assert _booted(machine).run(HISTORY, timeout=300).ok

    result = recover("boot-web", "--playbook", "recover.toml", *common, cwd=tmp_path, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = max((tmp_path / "runs").iterdir())
    assert outputs(run_dir, "contain")["power"] == "off"
    assert outputs(run_dir, "boot_single")["mode"] == "single-user"
    assert outputs(run_dir, "find_clean")["datasets"]["tank/www/cgi-bin"]["clean"] == "tank/www/cgi-bin@auto-2"
    assert driver.power_state() is PowerState.ON
    live = _booted(machine)
    assert "shell.cgi" not in live.run("ls /srv/www/cgi-bin").stdout.decode()
    assert live.run("systemctl is-system-running --wait; true", timeout=120).ok
    assert "recovery-evidence" in zfs(live, f"holds -H tank/www/cgi-bin.quarantine-{run_dir.name}@incident-{run_dir.name}")
    copied = outputs(run_dir, "evidence-copy")["snapshots"]
    assert all((run_dir / r["stream"]).is_file() for r in copied.values())


def _booted(machine: Guest) -> Guest:
    """The guest as the BMC last booted it (its forwarded ports are in guest.json), SSH up."""
    facts = json.loads(machine.state_file.read_text())
    machine.ssh_port, machine.http_port = facts["ssh_port"], facts["http_port"]
    machine.wait_for_ssh(400)
    return machine
