"""Vagrant lab timings: the lab's libvirtd start, the box (built or reused), `vagrant up` per guest
(one at a time, TCG), provisioning (with all three hosts) and `vagrant destroy`; compare with
bench/lab_boot.py for the QEMU lab.

Usage: python bench/vagrant_boot.py [HOST...]   (default: eu-web us-web people; needs root)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.lab.fleet_setup import FLEET, fleet_host  # noqa: E402
from recovery.lab.libvirt_host import LibvirtHost  # noqa: E402
from recovery.lab.rootpool import build_lab_image  # noqa: E402
from recovery.lab.vagrant_box import ensure_box  # noqa: E402
from recovery.lab.vagrant_lab import VagrantLab  # noqa: E402


def row(label: str, seconds: float) -> None:
    print(f"{label:<44} {seconds:8.1f} s", flush=True)


def main(names: list[str]) -> None:
    hosts = tuple(fleet_host(name) for name in names) if names else FLEET
    image = build_lab_image()
    LibvirtHost.stop_abandoned()
    started = time.monotonic()
    with LibvirtHost() as libvirt:
        row("libvirtd + virtlogd in their namespace", time.monotonic() - started)
        phase = time.monotonic()
        box = ensure_box(image, prefix=libvirt.netns.argv([]))
        row(f"box {box}", time.monotonic() - phase)
        with tempfile.TemporaryDirectory(prefix="recovery-vagrant-bench-") as run:
            lab = VagrantLab(Path(run), image, libvirt, box)
            try:
                for name, seconds in lab.up(hosts).items():
                    row(f"vagrant up {name}", seconds)
                if len(hosts) == len(FLEET):
                    row("provisioning (fleet_setup, pinned SSH)", lab.provision())
            finally:
                phase = time.monotonic()
                lab.destroy()
                row("vagrant destroy -f", time.monotonic() - phase)
    row("total", time.monotonic() - started)


if __name__ == "__main__":
    main(sys.argv[1:])
