"""Lab timings: image build (cached, and cold with --cold), boot to SSH per guest, single-user
boot to the sulogin prompt, and three guests booted in parallel vs one by one; with --fleets, the
whole fleet up as a rehearsal needs it, side by side: `recover lab up` (the QEMU lab) and the
Vagrant fleet (libvirtd, `vagrant up`, provisioning, the services), each torn down after.

Usage: python bench/lab_boot.py [--cold] [--fleets]
(--cold builds a fresh image into a temporary cache: about six minutes on 2 cores; --fleets needs
root, vagrant and vagrant-libvirt: about eight minutes more.)
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.lab.fleet import Lab  # noqa: E402
from recovery.lab.rootpool import build_lab_image  # noqa: E402
from recovery.lab.vagrant_fleet import VagrantFleet  # noqa: E402
from recovery.lab.vm import BootMode, Guest  # noqa: E402

NAMES = ("bench-a", "bench-b", "bench-c")


def timed(label: str, action) -> float:
    start = time.monotonic()
    action()
    seconds = time.monotonic() - start
    print(f"{label:<44} {seconds:8.1f} s", flush=True)
    return seconds


def boot_to_ssh(image, run_dir: Path, name: str) -> float:
    guest = Guest(image, run_dir, name)
    try:
        start = time.monotonic()
        guest.start()
        guest.wait_for_ssh(600)
        return time.monotonic() - start
    finally:
        guest.stop()


def single_user_prompt(image, run_dir: Path) -> float:
    guest = Guest(image, run_dir, "bench-single")
    try:
        start = time.monotonic()
        guest.start(BootMode.SINGLE_USER)
        console = guest.console()
        try:
            console.expect(rb"Give root password for maintenance", timeout=600)
        finally:
            console.close()
        return time.monotonic() - start
    finally:
        guest.stop()


def rescue_shell(image, run_dir: Path) -> float:
    """The rescue image logs root in on the console by itself: time to its shell prompt."""
    guest = Guest(image, run_dir, "bench-rescue")
    try:
        start = time.monotonic()
        guest.start(BootMode.RESCUE)
        console = guest.console()
        try:
            console.expect(rb"root@rescue:~# ", timeout=600)
        finally:
            console.close()
        return time.monotonic() - start
    finally:
        guest.stop()


def main(cold: bool) -> None:
    if cold:
        with tempfile.TemporaryDirectory() as cache:
            timed("image build, cold", lambda: build_lab_image(Path(cache), progress=lambda line: None))
    image = build_lab_image(progress=lambda line: None)
    timed("image build, cached", lambda: build_lab_image(progress=lambda line: None))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        one_by_one = [boot_to_ssh(image, run_dir / "serial", n) for n in NAMES]
        for name, seconds in zip(NAMES, one_by_one):
            print(f"{'boot to SSH, ' + name + ' alone':<44} {seconds:8.1f} s")
        start = time.monotonic()
        with ThreadPoolExecutor(len(NAMES)) as pool:
            together = list(pool.map(lambda n: boot_to_ssh(image, run_dir / "parallel", n), NAMES))
        wall = time.monotonic() - start
        print(f"{'three guests one by one (sum)':<44} {sum(one_by_one):8.1f} s")
        print(f"{'three guests in parallel (wall)':<44} {wall:8.1f} s  (slowest {max(together):.1f} s)")
        print(f"{'single-user boot to the sulogin prompt':<44} {single_user_prompt(image, run_dir):8.1f} s")
        print(f"{'rescue boot to the root shell prompt':<44} {rescue_shell(image, run_dir):8.1f} s")


def fleets() -> None:
    """The three hosts up, provisioned, with DNS, HAProxy and the mirror: each lab, one after the other."""
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "qemu", progress=lambda line: None)
        try:
            timed("recover lab up (QEMU lab)", lab.up)
        finally:
            lab.down(wipe=True)
        fleet = VagrantFleet(Path(tmp) / "vagrant", progress=lambda line: None)
        try:
            timed("Vagrant fleet up (libvirtd, vagrant up, ...)", fleet.up)
            print(f"{'  of which vagrant up (1 host, then 2 at once)':<44} {fleet.timings['vagrant_up_s']:8.1f} s")
            print(f"{'  of which provisioning':<44} {fleet.timings['provision_s']:8.1f} s")
        finally:
            fleet.down(wipe=True)


if __name__ == "__main__":
    main("--cold" in sys.argv[1:])
    if "--fleets" in sys.argv[1:]:
        fleets()
