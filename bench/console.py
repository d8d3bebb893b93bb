"""Single-user boot to the first console command, and console vs SSH round trips on the same lab guest.

Starts the lab BMC (sshd on 127.0.0.1) with one lab guest under it, then:
  * ``boot once single-user`` + ``power on`` through the BMC, timed to the
    first command answered on the console (sulogin included);
  * round trips of ``true``, a ZFS agent ``ping`` and ``zfs list`` (a new python3 per call, and
    served: one agent per session), four ``zfs list`` one after another and four at once from
    threads (what the steps do with a host's datasets: one round trip carries them, as a batch),
    and 1 MB of output, over the console of the single-user system;
  * ``power cycle`` into multi-user mode, and the same over SSH (host key
    pinned), printed side by side. The lab image keeps no getty on the serial
    line in multi-user mode (one owner per line), so the console column is the
    single-user system's.
Run: .venv/bin/python bench/console.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from recovery.lab.bmc import LabBmc
from recovery.lab.rootpool import build_lab_image
from recovery.lab.keys import generate_ed25519
from recovery.lab.vm import Guest
from recovery.oob.base import BootMode, PowerState
from recovery.oob.lab import LabDriver
from recovery.secrets import resolve
from recovery.transport.console import ConsoleSession
from recovery.transport.result import Result
from recovery.transport.ssh import SshSession
from recovery.zfs.client import AgentClient
from recovery.zfs.pipeline import side_by_side

BOOT_TIMEOUT = 300.0
Runner = Callable[[str], Result]


def _times(action: Callable[[], object], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.monotonic()
        action()
        seconds.append(time.monotonic() - start)
    return seconds


def _measure(session: ConsoleSession | SshSession, repeat: int) -> dict[str, list[float]]:
    """Round trips; the agent's both ways: a new python3 per call, and one served agent per session."""
    one_shot, served = AgentClient(session), AgentClient(session, served=True)
    served.ping()  # started once per session, as a recovery does
    try:
        return {
            "true": _times(lambda: session.run("true", timeout=120), repeat),
            "agent ping": _times(one_shot.ping, repeat),
            "agent ping, served": _times(served.ping, repeat),
            "zfs list": _times(lambda: one_shot.list_datasets(types=("snapshot",)), repeat),
            "zfs list, served": _times(lambda: served.list_datasets(types=("snapshot",)), repeat),
            "4 zfs list in turn": _times(lambda: [served.list_datasets(types=("snapshot",)) for _ in range(4)],
                                         repeat),
            "4 zfs list at once": _times(lambda: side_by_side(lambda _: served.list_datasets(types=("snapshot",)),
                                                              range(4)), repeat),
            "1 MB output": _times(lambda: session.run("head -c 1000000 /dev/urandom", timeout=600), 1),
        }
    finally:
        served.stop()


def _cell(seconds: list[float] | None) -> str:
    if not seconds:
        return "-"
    if len(seconds) == 1:
        return f"{seconds[0] * 1000:.0f} ms"
    return f"{statistics.median(seconds) * 1000:.0f} ms (max {max(seconds) * 1000:.0f})"


def _print(columns: dict[str, dict[str, list[float]]]) -> None:
    names = list(columns)
    print(f"{'':20}" + "".join(f"{name:>30}" for name in names))
    for row in next(iter(columns.values())):
        print(f"{row:20}" + "".join(f"{_cell(columns[name].get(row)):>30}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    repeat = parser.parse_args().repeat
    image = build_lab_image()
    password = resolve(f"file:{image.root_password_file}", "lab root password")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        run_dir = Path(tmp)
        key = run_dir / "bmc_key"
        with LabBmc(run_dir / "bmc", generate_ed25519(key, "bench")) as bmc:
            machine = Guest(image, run_dir, "bench-web")
            bmc.add(machine)
            driver = LabDriver(bmc.endpoint("bench-web", machine.name, key))
            try:
                _bench(driver, bmc, machine, password, repeat)
            finally:
                driver.close()
                Guest(image, run_dir, machine.name).stop()


def _bench(driver: LabDriver, bmc: LabBmc, machine: Guest, password: str, repeat: int) -> None:
    driver.boot_once(BootMode.SINGLE_USER)
    start = time.monotonic()
    driver.power_on()
    single = ConsoleSession(driver.console(), password, name=machine.name, login_timeout=BOOT_TIMEOUT)
    single.run("true")
    boot_to_command = time.monotonic() - start
    single.run("modprobe zfs", timeout=300)
    console_single = _measure(single, repeat)
    single.close()
    print(f"single-user boot (power on through the BMC) to the first console command: {boot_to_command:.1f} s")

    start = time.monotonic()
    driver.power_cycle()
    driver.wait_power(PowerState.ON, 60)
    booted = bmc.machines.load(machine.name).guest()
    booted.wait_for_ssh(BOOT_TIMEOUT)
    machine_ssh = SshSession(booted.ssh_target(timeout=30.0))
    machine_ssh.run("true", timeout=BOOT_TIMEOUT)
    boot_to_ssh = time.monotonic() - start
    machine_ssh.run("modprobe zfs", timeout=300)
    ssh = _measure(machine_ssh, repeat)
    machine_ssh.close()

    print(f"multi-user boot (power cycle through the BMC) to the first SSH command: {boot_to_ssh:.1f} s")
    print(f"round trips, median of {repeat} (1 MB: one run):")
    _print({"console (single-user)": console_single, "SSH (multi-user)": ssh})


if __name__ == "__main__":
    main()
