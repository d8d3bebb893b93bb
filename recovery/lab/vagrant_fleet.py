"""The Vagrant fleet as a whole lab: the guests under vagrant-libvirt, and DNS, HAProxy and the mirror beside them.

It offers the rehearsal what ``recovery.lab.fleet.Lab`` offers: ``up`` and
``down``, the inventory, each guest as a root shell, the fleet's keys and the
ground-truth and history files. The differences:

- the guests live in the lab's network namespace (recovery.lab.netns), so the
  services run there too, on its own loopback, and :meth:`VagrantFleet.reach`
  is the block in which the rehearsal talks to them: every thread and command
  started in it (``recover`` itself) stays there;
- the out-of-band side is the hypervisor: the inventory's ``oob`` blocks name
  libvirt (power, a one-time single-user kernel command line, ``virsh
  console``), which offers no rescue medium, so hosts are recovered through
  their own single-user mode;
- one process owns it: ``down`` (or that process's end, through
  ``LibvirtHost.stop_abandoned`` at the next start) removes it all.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from recovery.config.load import load_inventory
from recovery.lab import keys
from recovery.lab.bind import LabDns
from recovery.lab.daemon import LabDaemon, LabError
from recovery.lab.fleet import DNS_ADDRESSES, MIRROR_DNS_ADDRESS, copy_site
from recovery.lab.fleet_setup import FLEET, STAGING, WEB_HOSTS, FleetKeys
from recovery.lab.haproxy import MIRROR_SERVER, LabHaproxy
from recovery.lab.lab_inventory import GuestFacts, LibvirtFacts, ServiceFacts, inventory_text
from recovery.lab.libvirt_host import LibvirtHost
from recovery.lab.mirror import NOTICE_FILE, Mirror
from recovery.lab.ports import LOOPBACK
from recovery.lab.rootpool import build_lab_image
from recovery.lab.vagrant_box import ensure_box
from recovery.lab.vagrant_lab import DOMAIN_PREFIX, VagrantGuest, VagrantLab
from recovery.lab.vm import choose_accel

Progress = Callable[[str], None]
HTTP_PORT = 80


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class VagrantFleet:
    """eu-web, us-web and people under Vagrant with the lab services, in ``run_dir``."""

    def __init__(self, run_dir: Path, progress: Progress = _say) -> None:
        self.run_dir = run_dir.absolute()
        self.progress = progress
        self.inventory_file = self.run_dir / "inventory.toml"
        self.ground_truth_dir = self.run_dir / "ground-truth"
        self.history_file = self.run_dir / "history.json"
        self.keys_dir = self.run_dir / "keys"
        self.mirror_site = self.run_dir / "mirror-site"
        self.tsig_secret_file = self.run_dir / "tsig.secret"
        self.libvirt: LibvirtHost | None = None
        self.vagrant: VagrantLab | None = None
        self.timings: dict[str, float] = {}
        self._daemons: list[LabDaemon] = []

    def up(self) -> None:
        """libvirtd, the box, ``vagrant up``, provisioning, the services, the inventory; undone on failure."""
        if self.vagrant is not None:
            self.progress(f"Vagrant fleet already up in {self.run_dir}")
            return
        abandoned = LibvirtHost.stop_abandoned()
        if abandoned:
            self.progress(f"stopped lab libvirt hosts whose owner is gone: {', '.join(abandoned)}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            image = build_lab_image(progress=self.progress)
            self.libvirt = LibvirtHost().start()
            box = ensure_box(image, self.progress, prefix=self.libvirt.netns.argv([]))
            driver = "kvm" if choose_accel(image) == "kvm" else "qemu"  # as the QEMU lab decides
            self.vagrant = VagrantLab(self.run_dir, image, self.libvirt, box, driver, self.progress)
            self.timings["vagrant_up_s"] = round(sum(self.vagrant.up().values()), 1)
            self.timings["provision_s"] = self.vagrant.provision()
            with self.reach():
                services = self._start_services()
            self._write_inventory(services)
        except BaseException:
            self.progress("Vagrant fleet start failed: destroying what was started")
            self.down()
            raise
        self.progress(f"Vagrant fleet up; inventory: {self.inventory_file}")

    def down(self, wipe: bool = False) -> None:
        """Stop the services, ``vagrant destroy`` the guests, stop libvirt; ``wipe`` deletes the lab's files."""
        for daemon in reversed(self._daemons):
            daemon.stop()
        self._daemons = []
        try:
            if self.vagrant is not None:
                self.vagrant.destroy()
        finally:
            self.vagrant = None
            if self.libvirt is not None:
                self.libvirt.stop()
                self.libvirt = None
        if wipe:
            self._wipe()

    def reach(self) -> AbstractContextManager[None]:
        """Run the block inside the lab's namespace, where the guests and services answer."""
        return self._libvirt().netns.entered()

    def require_running(self) -> None:
        """Raises LabError unless the fleet is up (there is no record to return: this object is the fleet)."""
        self._lab()

    def guest(self, name: str) -> VagrantGuest:
        guests = self._lab().guests()
        if name not in guests:
            raise LabError(f"no Vagrant guest {name!r} is up (hosts: {', '.join(sorted(guests))})")
        return guests[name]

    def fleet_keys(self) -> FleetKeys:
        return FleetKeys.ensure(self.keys_dir)

    # -- services and inventory ------------------------------------------------

    def _start_services(self) -> ServiceFacts:
        """Mirror, BIND and HAProxy on the namespace's loopback; HAProxy's servers are the guests themselves."""
        self.progress("DNS, HAProxy and the mirror in the lab's namespace…")
        copy_site(self.guest(STAGING.name), self.mirror_site)
        mirror = self._start(Mirror(self.mirror_site))
        dns = self._start(LabDns(DNS_ADDRESSES.values()))
        keys.write_private(self.tsig_secret_file, dns.secret.encode() + b"\n")
        where = self._lab().ssh_configs()
        servers = {host.name: f"{where[host.name].address}:{HTTP_PORT}" for host in WEB_HOSTS}
        haproxy = self._start(LabHaproxy(servers, mirror=f"{LOOPBACK}:{mirror.port}"))
        return ServiceFacts(
            dns_port=dns.port, zone=dns.zone, record=dns.record, tsig_name=dns.key_name,
            tsig_algorithm=dns.algorithm, tsig_secret_file=str(self.tsig_secret_file),
            mirror_address=MIRROR_DNS_ADDRESS, haproxy_socket=haproxy.socket.path, haproxy_backend=haproxy.backend,
            mirror_server=MIRROR_SERVER, notice_file=str(mirror.workdir / NOTICE_FILE),
        )  # fmt: skip

    def _start(self, daemon: Any) -> Any:
        daemon.start()
        self._daemons.append(daemon)
        return daemon

    def _write_inventory(self, services: ServiceFacts) -> None:
        """The lab inventory's layout, with the guests' own addresses and libvirt as their out-of-band side."""
        lab = self._lab()
        where = lab.ssh_configs()
        guests = {
            host.name: GuestFacts(where[host.name].port, HTTP_PORT, lab.host_key(host),
                                  DNS_ADDRESSES.get(host.name), where[host.name].address)
            for host in FLEET
        }  # fmt: skip
        oob = LibvirtFacts(self._libvirt().uri, {host.name: DOMAIN_PREFIX + host.name for host in FLEET})
        passwords = {host.name: str(lab.root_password_file(host)) for host in FLEET}
        self.inventory_file.write_text(inventory_text(guests, services, str(lab.image.operator_key), passwords, oob))
        load_inventory(self.inventory_file)

    # -- helpers ---------------------------------------------------------------

    def _lab(self) -> VagrantLab:
        if self.vagrant is None:
            raise LabError(f"the Vagrant fleet in {self.run_dir} is not up")
        return self.vagrant

    def _libvirt(self) -> LibvirtHost:
        if self.libvirt is None:
            raise LabError(f"the Vagrant fleet in {self.run_dir} has no libvirt host running")
        return self.libvirt

    def _wipe(self) -> None:
        """Delete only what ``up`` and the rehearsal write here."""
        for directory in ("identity", "keys", "mirror-site", "ground-truth", ".vagrant"):
            shutil.rmtree(self.run_dir / directory, ignore_errors=True)
        for name in ("inventory.toml", "lab.json", "history.json", "tsig.secret", "vagrant.log"):
            (self.run_dir / name).unlink(missing_ok=True)
        for password in self.run_dir.glob("root-password-*"):
            password.unlink()
