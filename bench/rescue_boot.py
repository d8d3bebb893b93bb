"""Rescue boot vs single-user boot, and the RTO against the boot floor, side by side in one run.

1. A lab guest booted alone to its first console command: single-user (sulogin, the root
   password, a command) and from the rescue image (root logged in by itself, a command); and
   booted normally to its first command over SSH. The boot floor of a recovery is its two
   boots: the rescue (or single-user) boot plus the normal boot.
2. With --rto, the RTO (start to traffic back) of rehearsals on eu-web, each against two
   floors (about 40 minutes more):
   - the floor of step 1, a guest booting alone;
   - the floor of the rehearsal's own eu-web, the rest of the fleet up as it is during the
     recovery: the same guest's bare boots, measured in its lab just before the attack and
     again after the recovery, the goal judged against their mean (the fleet's other guests
     share the machine's cores, and what they do in the background moved one such floor
     between 85 and 110 s from one lab to the next);
   the rehearsals:
   - awstats-2005 through the rescue image (goal: <= 1.5x). Through single-user mode it
     cannot be recovered: its rootkit is on the running system, whose boot environment
     cannot be swapped under it; the recovery stops at restore and keeps eu-web out;
   - rsync-2009 (data only) through the rescue image and through single-user mode, and
     their ratio: the same recovery, the two ways of booting.

Usage: python bench/rescue_boot.py [--rto]
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery import rehearsal  # noqa: E402
from recovery.lab.fleet import GUEST_CPUS, GUEST_MEMORY_MB, Lab  # noqa: E402
from recovery.lab.image import ImagePaths  # noqa: E402
from recovery.lab.rootpool import build_lab_image  # noqa: E402
from recovery.lab.vm import BootMode, Guest, GuestError, SerialConsole  # noqa: E402

BOOT_TIMEOUT = 600.0


def first_command(guest: Guest, password_file: Path, mode: BootMode) -> float:
    """Seconds from power on of ``guest`` (off) to the output of its first command on the serial console
    (single-user mode asks for the root password in ``password_file``)."""
    start = time.monotonic()
    guest.start(mode)
    console = guest.console()
    try:
        if mode is BootMode.SINGLE_USER:
            console.expect(rb"Give root password for maintenance", BOOT_TIMEOUT)
            time.sleep(0.5)  # sulogin discards what arrives while it prints
            console.send_line(password_file.read_text().strip())
        else:
            console.expect(rb"rescue login: root \(automatic login\)", BOOT_TIMEOUT)
        _answered(console, start)
    finally:
        console.close()
    return time.monotonic() - start


def first_command_over_ssh(guest: Guest) -> float:
    """Seconds from power on of a normal boot of ``guest`` (off) to the first command answered over SSH."""
    start = time.monotonic()
    guest.start(BootMode.NORMAL)
    guest.wait_for_ssh(BOOT_TIMEOUT)
    guest.run("true", timeout=BOOT_TIMEOUT)
    return time.monotonic() - start


def alone(image: ImagePaths, run_dir: Path, name: str, measure: Callable[[Guest], float]) -> float:
    """``measure`` on a guest of its own, stopped afterwards."""
    guest = _fleet_like(image, run_dir, name)
    try:
        return measure(guest)
    finally:
        guest.stop()


def in_the_lab(lab: Lab, mode: BootMode) -> float:
    """The floor of the lab's eu-web, the rest of the fleet up: its bare ``mode`` boot to a first
    console command, then its normal boot to a first command over SSH (it is left running, as
    before: the attack and the recovery come next)."""
    guest = lab.guest("eu-web")
    guest.stop()
    try:
        first = first_command(guest, lab.root_password_file("eu-web"), mode)  # the lab's own, not the image's
    finally:
        guest.stop()
    return first + first_command_over_ssh(guest)


def _fleet_like(image: ImagePaths, run_dir: Path, name: str) -> Guest:
    """A guest with the lab fleet's CPUs and memory: the floor is the boot of the hosts the RTO is of."""
    return Guest(image, run_dir, name, memory_mb=GUEST_MEMORY_MB, cpus=GUEST_CPUS)


def _answered(console: SerialConsole, start: float) -> None:
    """Ask every second until the shell answers: the first command that runs."""
    while time.monotonic() - start < BOOT_TIMEOUT:
        console.send_line("echo FIRST-COMMAND-$((6*7))")
        try:
            console.expect(rb"FIRST-COMMAND-42", 1.0)
            return
        except GuestError:
            continue
    raise GuestError(f"no shell answered within {BOOT_TIMEOUT:.0f} s")


def rehearsal_rto(scenario: str, rescue: bool) -> tuple[float, bool, tuple[float, float]]:
    """The RTO (start to traffic back) of ``scenario`` on eu-web in a fresh lab, whether every check
    passed, and the floor of that lab's eu-web before the attack and after the recovery."""
    mode = BootMode.RESCUE if rescue else BootMode.SINGLE_USER
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", progress=lambda line: None)
        try:
            lab.up()
            before = in_the_lab(lab, mode)
            result = rehearsal.rehearse("eu-web", scenario, lab, lambda line: None, fresh=False, rescue=rescue,
                                        quiet=True)
            after = in_the_lab(lab, mode)
        finally:
            lab.down(wipe=True)
    return result.rto or 0.0, result.passed, (before, after)


def main(argv: list[str]) -> int:
    """Each figure is printed as soon as it is measured (the RTO runs take minutes each)."""
    image = build_lab_image(progress=lambda line: None)
    print(f"{'boot to the first command':<48} {'seconds':>8}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        single = _row("  single-user (sulogin + password), console",
                      alone(image, run_dir, "bench-single", lambda g: first_command(g, image.root_password_file, BootMode.SINGLE_USER)))
        rescue = _row("  rescue image (root logged in by itself), console",
                      alone(image, run_dir, "bench-rescue", lambda g: first_command(g, image.root_password_file, BootMode.RESCUE)))
        print(f"{'  rescue / single-user':<48} {rescue / single:8.2f}x", flush=True)
        normal = _row("  normal boot, SSH", alone(image, run_dir, "bench-normal", first_command_over_ssh))
    floor = {"rescue": _row("  boot floor through the rescue image", rescue + normal),
             "single-user": _row("  boot floor through single-user mode", single + normal)}
    if "--rto" not in argv:
        return 0
    print(f"\n{'RTO on eu-web, to traffic back':<48} {'seconds':>8}  graded  {'floor in lab':>15}  / floor  "
          "/ floor alone", flush=True)
    print(f"{'':<48} {'':>8}  {'':6}  {'before / after':>15}  {'(mean)':>7}", flush=True)
    rto = {}
    for scenario, way in (("awstats-2005", "rescue"), ("rsync-2009", "rescue"), ("rsync-2009", "single-user")):
        seconds, passed, (before, after) = rto[scenario, way] = rehearsal_rto(scenario, rescue=way == "rescue")
        label = f"  {scenario} through {'the rescue image' if way == 'rescue' else 'single-user mode'}"
        in_lab = (before + after) / 2
        print(f"{label:<48} {seconds:8.1f}  {'PASS' if passed else 'FAIL':6}  {before:7.1f} / {after:5.1f}  "
              f"{seconds / in_lab:6.2f}x  {seconds / floor[way]:11.2f}x", flush=True)
    if rto["rsync-2009", "single-user"][0]:
        ratio = rto["rsync-2009", "rescue"][0] / rto["rsync-2009", "single-user"][0]
        print(f"{'  rsync-2009: rescue / single-user':<48} {ratio:8.2f}x")
    print("goal: RTO through the rescue image <= 1.5x the floor of the same guest in its lab (the mean of its two)")
    return 0


def _row(label: str, seconds: float) -> float:
    print(f"{label:<48} {seconds:8.1f}", flush=True)
    return seconds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
