"""Rescue boot vs single-user boot, side by side in one run.

1. The same lab guest booted to its first console command: single-user (sulogin, the root
   password, a command) and from the rescue image (root logged in by itself, a command).
2. With --rto, the RTO of the same rehearsal (awstats-2005 on eu-web) recovered through the
   rescue image and through single-user mode, and their ratio (about 25 minutes more).

Usage: python bench/rescue_boot.py [--rto]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery import rehearsal  # noqa: E402
from recovery.lab.fleet import Lab  # noqa: E402
from recovery.lab.image import ImagePaths  # noqa: E402
from recovery.lab.rootpool import build_lab_image  # noqa: E402
from recovery.lab.vm import BootMode, Guest, GuestError, SerialConsole  # noqa: E402

BOOT_TIMEOUT = 600.0


def first_command(image: ImagePaths, run_dir: Path, mode: BootMode) -> float:
    """Seconds from power on to the output of the first command on the serial console."""
    guest = Guest(image, run_dir, f"bench-{mode.value}")
    try:
        start = time.monotonic()
        guest.start(mode)
        console = guest.console()
        try:
            if mode is BootMode.SINGLE_USER:
                console.expect(rb"Give root password for maintenance", BOOT_TIMEOUT)
                time.sleep(0.5)  # sulogin discards what arrives while it prints
                console.send_line(image.root_password_file.read_text().strip())
            else:
                console.expect(rb"rescue login: root \(automatic login\)", BOOT_TIMEOUT)
            _answered(console, start)
        finally:
            console.close()
        return time.monotonic() - start
    finally:
        guest.stop()


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


def rehearsal_rto(rescue: bool) -> tuple[float, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab", progress=lambda line: None)
        try:
            result = rehearsal.rehearse("eu-web", "awstats-2005", lab, lambda line: None, rescue=rescue)
        finally:
            lab.down(wipe=True)
    return result.timings.get("recover", 0.0), result.passed


def main(argv: list[str]) -> int:
    image = build_lab_image(progress=lambda line: None)
    with tempfile.TemporaryDirectory() as tmp:
        single = first_command(image, Path(tmp), BootMode.SINGLE_USER)
        rescue = first_command(image, Path(tmp), BootMode.RESCUE)
    print(f"{'boot to the first console command':<44} {'seconds':>8}")
    print(f"{'  single-user (sulogin + password)':<44} {single:8.1f}")
    print(f"{'  rescue image (root logged in by itself)':<44} {rescue:8.1f}")
    print(f"{'  rescue / single-user':<44} {rescue / single:8.2f}x")
    if "--rto" in argv:
        rto_rescue, passed_rescue = rehearsal_rto(rescue=True)
        rto_single, passed_single = rehearsal_rto(rescue=False)
        print(f"\n{'RTO of awstats-2005 on eu-web':<44} {'seconds':>8}  graded")
        print(f"{'  through the rescue image':<44} {rto_rescue:8.1f}  {'PASS' if passed_rescue else 'FAIL'}")
        print(f"{'  through single-user mode':<44} {rto_single:8.1f}  {'PASS' if passed_single else 'FAIL'}")
        if rto_single:
            print(f"{'  rescue / single-user':<44} {rto_rescue / rto_single:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
