"""The Vagrant lab without a VM: Vagrantfile, settings, ssh-config parsing and the inventory made from it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


import recovery.steps  # noqa: F401
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import resolve
from recovery.engine.plan import build
from recovery.lab.fleet_setup import FLEET
from recovery.lab.image import ImagePaths
from recovery.lab.libvirt_host import LibvirtHost
from recovery.lab.lab_inventory import GuestFacts, LibvirtFacts, ServiceFacts, inventory_text
from recovery.lab.vagrant_lab import SshConfig, VagrantLab, machine_id, parse_ssh_config

VAGRANT = Path(__file__).resolve().parents[2] / "vagrant"

SSH_CONFIG = """\
Host eu-web
  HostName 192.168.121.44
  User root
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /cache/operator_ed25519
  IdentitiesOnly yes
  LogLevel FATAL

Host people
  HostName 192.168.121.45
  User root
  Port 2222
  IdentityFile "/cache/operator_ed25519"
"""


def test_inventory_and_playbook_plan_for_the_web_group():
    inventory = load_inventory(VAGRANT / "inventory.toml")
    playbook = load_playbook(VAGRANT / "recover-ssh.toml")
    plan = build(inventory, playbook, resolve(inventory, "web"), VAGRANT / "recover-ssh.toml")
    assert plan.target.hosts == ("eu-web", "us-web")


def test_vagrantfile_is_valid_ruby():
    """`vagrant validate` needs the lab's settings and box; Ruby's own syntax check runs anywhere."""
    result = subprocess.run(["ruby", "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True)
    assert result.returncode == 0 and "Syntax OK" in result.stdout, result.stderr


def test_vagrantfile_never_uses_a_nat_network():
    text = (VAGRANT / "Vagrantfile").read_text()
    assert 'management_network_mode = "none"' in text
    assert 'libvirt__forward_mode: "none"' in text
    assert "ssh_host_ed25519_key" in text and "-fw_cfg" in text  # the host key the lab pins


def test_ssh_config_gives_where_not_whom_to_trust():
    found = parse_ssh_config(SSH_CONFIG)
    assert found["eu-web"] == SshConfig("eu-web", "192.168.121.44", 22, "root", "/cache/operator_ed25519")
    assert found["people"].port == 2222 and found["people"].identity_file == "/cache/operator_ed25519"
    assert not hasattr(found["eu-web"], "strict_host_key_checking")


def test_the_fleet_inventory_names_the_guests_addresses_and_libvirt(tmp_path: Path):
    """What VagrantFleet writes: the guests' own addresses, the lab's host-key pins, libvirt as the BMC."""
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAI"
    keys = {h.name: f"ssh-ed25519 {blob}{h.number:02d}{'x' * 38} root@{h.name}" for h in FLEET}
    guests = {h.name: GuestFacts(22, 80, keys[h.name], None, f"192.168.121.{h.number}") for h in FLEET}
    services = ServiceFacts(
        dns_port=5353, zone="lab.test", record="www", tsig_name="k", tsig_algorithm="hmac-sha256",
        tsig_secret_file="/t", mirror_address="127.0.0.4", haproxy_socket="/s", haproxy_backend="web",
        mirror_server="mirror",
    )  # fmt: skip
    oob = LibvirtFacts("qemu:///system?socket=/lab/libvirt-sock", {h.name: f"recovery-lab-{h.name}" for h in FLEET})
    path = tmp_path / "inventory.toml"
    path.write_text(inventory_text(guests, services, "/cache/operator_ed25519", {h.name: "/pw" for h in FLEET}, oob))
    inventory = load_inventory(path)
    for host in FLEET:
        entry = inventory.hosts[host.name]
        assert entry.address == f"192.168.121.{host.number}"
        assert entry.ssh.host_key == " ".join(keys[host.name].split()[:2])
        assert entry.oob is not None and entry.oob.driver == "libvirt"
        assert entry.oob.domain == f"recovery-lab-{host.name}" and entry.oob.uri.endswith("libvirt-sock")
    assert inventory.hosts["eu-web"].health[0].url == "http://192.168.121.11:80/"


def test_machine_ids_differ_per_host_and_are_stable():
    ids = {machine_id(h.name, "box") for h in FLEET}
    assert len(ids) == len(FLEET) and all(len(i) == 32 for i in ids)
    assert machine_id("eu-web", "box") == machine_id("eu-web", "box")


def test_settings_give_each_host_its_identity_before_boot(tmp_path: Path):
    image = ImagePaths(
        key="k", cache=tmp_path, disk=tmp_path / "b", kernel=tmp_path / "v", initrd=tmp_path / "i",
        operator_key=tmp_path / "op", root_password_file=tmp_path / "pw", log=tmp_path / "l",
        rescue_disk=tmp_path / "r", rescue_sha256=tmp_path / "r.sha256", root_pool=tmp_path / "rpool-x.qcow2",
    )  # fmt: skip
    libvirt = LibvirtHost()
    libvirt.state = tmp_path / "libvirt"
    lab = VagrantLab(tmp_path / "run", image, libvirt, "recovery-lab-abc")
    (tmp_path / "run").mkdir()
    settings = json.loads(lab.write_settings().read_text())
    assert settings["box"] == "recovery-lab-abc"
    assert settings["libvirt"]["socket"] == str(tmp_path / "libvirt/run/libvirt/libvirt-sock")
    assert settings["libvirt"]["driver"] == "qemu"
    assert settings["cmd_line"].startswith("root=zfs:AUTO")
    eu = settings["hosts"]["eu-web"]
    identity = Path(eu["identity"])
    assert (identity / "hostname").read_text() == "eu-web"
    assert (identity / "lan").read_text() == "10.77.0.11/24 52:54:00:77:00:0b"
    assert (identity / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    assert lab.host_key(FLEET[0]).startswith("ssh-ed25519 ")
