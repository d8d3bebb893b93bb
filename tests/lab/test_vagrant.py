"""The Vagrant lab really boots: the lab box under vagrant-libvirt on the lab's own libvirtd.

One fleet serves the module (recovery.lab.vagrant_fleet): libvirtd and
virtlogd in a fresh network namespace (unreachable default route), the box
built or reused, eu-web, us-web and people brought up in TCG and provisioned
like the QEMU lab, DNS, HAProxy and the mirror beside them; then the rsync-2009
rehearsal against it, with libvirt as the out-of-band side; then ``vagrant
destroy -f`` and the daemons stopped by PID, pass or fail.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from recovery import rehearsal
from recovery.config.load import load_inventory
from recovery.lab.fleet_setup import FLEET, WEB_HOSTS
from recovery.lab.keys import generate_ed25519
from recovery.lab.vagrant_fleet import VagrantFleet
from recovery.lab.vagrant_lab import VagrantGuest, VagrantLab
from recovery.transport.ssh import HostKeyRefused

pytestmark = [pytest.mark.lab, pytest.mark.vagrant]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VagrantFleet]:
    """The fleet up, provisioned, its services beside it; destroyed and its daemons stopped at the end."""
    fleet = VagrantFleet(tmp_path_factory.mktemp("vagrant-lab"))
    try:
        started = time.monotonic()
        fleet.up()
        print(f"Vagrant fleet up in {time.monotonic() - started:.1f} s: {fleet.timings}")
        yield fleet
    finally:
        fleet.down()


@pytest.fixture(scope="module")
def vagrant_lab(fleet: VagrantFleet) -> VagrantLab:
    assert fleet.vagrant is not None
    return fleet.vagrant


@pytest.fixture(scope="module")
def guests(vagrant_lab: VagrantLab) -> dict[str, VagrantGuest]:
    return vagrant_lab.guests()


def test_the_lab_libvirtd_has_no_route_off_this_machine(vagrant_lab: VagrantLab):
    routes = subprocess.run(["ip", "-n", vagrant_lab.libvirt.netns.name, "route", "show", "default"],
                            capture_output=True, text=True).stdout  # fmt: skip
    assert routes.split()[:2] == ["unreachable", "default"]
    for network in vagrant_lab.libvirt.virsh("net-list", "--name").split():
        assert "<forward" not in vagrant_lab.libvirt.virsh("net-dumpxml", network)


def test_every_guest_answers_ssh_with_its_pinned_host_key(guests: dict[str, VagrantGuest]):
    assert set(guests) == {host.name for host in FLEET}
    for name, guest in guests.items():
        assert guest.run("hostname").stdout.decode().strip() == name


def test_another_host_key_is_refused(guests: dict[str, VagrantGuest], tmp_path: Path):
    stranger = generate_ed25519(tmp_path / "stranger", "stranger").split()[:2]
    guest = guests["eu-web"]
    impostor = VagrantGuest(guest.name, guest.netns, replace(guest.target, host_keys=(" ".join(stranger),)))
    with pytest.raises(HostKeyRefused):
        impostor.run("true")


def test_web_host_boots_its_zfs_boot_environment_with_tank(guests: dict[str, VagrantGuest]):
    eu = guests["eu-web"]
    assert eu.run("zpool status -x").stdout.decode().strip() == "all pools are healthy"
    assert eu.run("zpool get -H -o value bootfs rpool").stdout.decode().strip() == "rpool/ROOT/debian"
    datasets = eu.run("zfs list -H -o name").stdout.decode().split()
    assert {"rpool/ROOT/debian", "tank/www/htdocs", "tank/www/cgi-bin", "tank/apache", "tank/home"} <= set(datasets)


def test_staging_pushed_the_site_over_the_lab_lan(vagrant_lab: VagrantLab, guests: dict[str, VagrantGuest]):
    for host in WEB_HOSTS:
        address = vagrant_lab.ssh_configs()[host.name].address
        with vagrant_lab.libvirt.netns.entered():
            page = urllib.request.urlopen(f"http://{address}/", timeout=30).read().decode()
        assert "Lab web host" in page


def test_inventory_from_ssh_config_pins_the_lab_host_keys(fleet: VagrantFleet, vagrant_lab: VagrantLab):
    inventory = load_inventory(fleet.inventory_file)
    where = vagrant_lab.ssh_configs()
    for host in FLEET:
        entry = inventory.hosts[host.name]
        assert entry.address == where[host.name].address
        assert entry.ssh.host_key == " ".join(vagrant_lab.host_key(host).split()[:2])
        assert entry.oob is not None and entry.oob.driver == "libvirt"
        state = vagrant_lab.libvirt.virsh("domstate", entry.oob.domain).strip()
        assert state == "running", f"{entry.oob.domain}: {state}"  # the inventory names the real domains


# The rehearsal changes the fleet (attack, recovery): it comes last in the module.


def test_rsync_2009_rehearsal_through_libvirt_and_single_user_mode(fleet: VagrantFleet):
    """`recover rehearse eu-web --scenario rsync-2009 --lab vagrant` on this fleet, graded like the QEMU lab's:
    eu-web rebooted single-user through libvirt, restored from its snapshots, back in rotation; us-web,
    which holds the same scripts, swept dirty and kept out."""
    said: list[str] = []
    result = rehearsal.rehearse("eu-web", "rsync-2009", fleet, said.append, fresh=False, rescue=False)
    for check in result.checks:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name} — {check.detail}")
    print(f"timings: {result.timings}")
    assert result.passed, [c for c in result.checks if not c.passed]
    names = {check.name for check in result.checks}
    assert {"eu-web: nothing of the attack left on the host", "eu-web: evidence snapshots held",
            "mirror answered during the run"} <= names
    assert result.timings.get(rehearsal.TRAFFIC_BACK), "traffic came back to a recovered host"
