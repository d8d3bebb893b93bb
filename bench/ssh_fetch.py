"""A bulk stream off a lab guest over SSH: Paramiko's channel vs the system's ssh, side by side.

What `golden_capture` and `evidence-copy` do with a boot environment's ``zfs send``
stream (hundreds of MB): ``SshSession.fetch(..., large=True)`` takes it through
``ssh`` (recovery.transport.openssh) where it can, Paramiko otherwise. The guest is
booted alone with the lab fleet's CPUs and memory; each way copies the same
command's output into a file here, alternately, ``ROUNDS`` times.

Usage: python bench/ssh_fetch.py [MB]   (default 100)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.lab.fleet import GUEST_CPUS, GUEST_MEMORY_MB  # noqa: E402
from recovery.lab.rootpool import build_lab_image  # noqa: E402
from recovery.lab.vm import BootMode, Guest  # noqa: E402
from recovery.transport import openssh  # noqa: E402
from recovery.transport.files import copy_bounded, private_file  # noqa: E402
from recovery.transport.ssh import SshSession  # noqa: E402

ROUNDS = 3


def through_paramiko(session: SshSession, command: str, local: str, size: int) -> int:
    """The Paramiko channel ``SshSession.fetch`` falls back to (a target behind a gateway)."""
    channel = session.channel(command)
    try:
        channel.shutdown_write()
        with private_file(local) as sink:
            return copy_bounded(channel.recv, sink.write, size, "bench")
    finally:
        channel.close()


def main(argv: list[str]) -> int:
    megabytes = int(argv[0]) if argv else 100
    size = megabytes * 2**20
    command = f"head -c {size} /dev/zero"
    image = build_lab_image(progress=lambda line: None)
    with tempfile.TemporaryDirectory() as tmp:
        guest = Guest(image, Path(tmp), "bench-fetch", memory_mb=GUEST_MEMORY_MB, cpus=GUEST_CPUS)
        try:
            guest.start(BootMode.NORMAL)
            guest.wait_for_ssh(600)
            seconds: dict[str, list[float]] = {"paramiko": [], "ssh": []}
            with SshSession(guest.ssh_target()) as session:
                for _ in range(ROUNDS):
                    for way, copy in (("paramiko", lambda: through_paramiko(session, command, f"{tmp}/p", size)),
                                      ("ssh", lambda: openssh.fetch(session.target, command, f"{tmp}/s", size,
                                                                    600))):
                        start = time.monotonic()
                        assert copy() == size, way
                        seconds[way].append(time.monotonic() - start)
        finally:
            guest.stop()
    print(f"{megabytes} MB from a lab guest over SSH, {ROUNDS} rounds, median")
    for way, taken in seconds.items():
        median = statistics.median(taken)
        print(f"  {way:<9} {median:6.1f} s  {megabytes / median:6.1f} MB/s   ({', '.join(f'{t:.1f}' for t in taken)})")
    ratio = statistics.median(seconds["paramiko"]) / statistics.median(seconds["ssh"])
    print(f"  ssh is {ratio:.2f}x as fast")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
