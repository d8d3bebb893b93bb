"""The Vagrant lab's inventory and playbook are valid, and its Vagrantfile uses the lab's own scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import recovery.steps  # noqa: F401
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import resolve
from recovery.engine.plan import build

VAGRANT = Path(__file__).resolve().parents[2] / "vagrant"


def test_inventory_and_playbook_plan_for_the_web_group():
    inventory = load_inventory(VAGRANT / "inventory.toml")
    playbook = load_playbook(VAGRANT / "recover-ssh.toml")
    plan = build(inventory, playbook, resolve(inventory, "web"), VAGRANT / "recover-ssh.toml")
    assert plan.target.hosts == ("eu-web", "us-web")


def test_vagrantfile_provisions_with_the_qemu_labs_scripts():
    text = (VAGRANT / "Vagrantfile").read_text()
    lab = VAGRANT.parent / "recovery" / "lab"
    for script in ("provision.sh", "files/pool.sh", "files/web-host.sh", "files/staging-host.sh",
                   "files/auto-snapshot.sh", "files/www-sync.sh", "files/www-sync-receive.sh"):
        assert script.split("/")[-1] in text
        assert (lab / script).is_file()


def test_vagrantfile_is_valid_ruby():
    """`vagrant validate` needs Vagrant and a box; Ruby's own syntax check runs anywhere."""
    result = subprocess.run(["ruby", "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True)
    assert result.returncode == 0 and "Syntax OK" in result.stdout, result.stderr
