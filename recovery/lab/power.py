"""A QEMU process as a machine with a power switch, for the lab's BMCs.

Power off means no QEMU process, as on real hardware nothing runs; power on
starts QEMU again with the same command line. A graceful power off presses
the ACPI power button (QMP ``system_powerdown``) and leaves the rest to the
guest: a guest that ignores it stays on, like a hung or hostile OS would.

The QEMU child dies with the process that owns this object (parent-death
signal), so a BMC killed outright leaves no VM behind.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from recovery.lab.qmp import QmpError, qmp
from recovery.oob.base import PowerState

QUIT_GRACE = 2.0
QMP_READY_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
#: QMP run states of a live QEMU process whose guest has no power.
_OFF_STATUSES = frozenset({"shutdown"})


def power_of(status: str) -> PowerState:
    """The power state a live QEMU process's QMP ``query-status`` status means."""
    return PowerState.OFF if status in _OFF_STATUSES else PowerState.ON


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuMachine:
    """Starts, stops and inspects one QEMU process.

    ``argv`` names neither a QMP socket nor a serial port: the machine adds
    both, the first serial port (COM1) as a unix socket at ``serial_socket``.
    """

    def __init__(self, argv: Sequence[str], qmp_socket: Path, serial_socket: Path, log: Path) -> None:
        self.argv = list(argv)
        self.qmp_socket = qmp_socket
        self.serial_socket = serial_socket
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def power_state(self) -> PowerState:
        if not self.running():
            return PowerState.OFF
        return power_of(qmp(self.qmp_socket, "query-status")["status"])

    def power_on(self, timeout: float = QMP_READY_TIMEOUT) -> None:
        """Start QEMU and return once its QMP socket answers, so every later command reaches it."""
        if self.running():
            return
        for stale in (self.qmp_socket, self.serial_socket):
            stale.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    *self.argv,
                    "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
                    "-serial", f"unix:{self.serial_socket},server=on,wait=off",
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self._wait_for_qmp(timeout)

    def press_power_button(self) -> None:
        if self.running():
            qmp(self.qmp_socket, "system_powerdown")

    def force_off(self) -> None:
        """QMP ``quit``; SIGKILL of the QEMU this object started if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            qmp(self.qmp_socket, "quit")
        except QmpError:
            pass  # the socket may close before the reply; the wait below decides
        try:
            process.wait(QUIT_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def reset(self) -> None:
        if self.running():
            qmp(self.qmp_socket, "system_reset")

    def _wait_for_qmp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                qmp(self.qmp_socket, "query-status")
                return
            except QmpError:
                if time.monotonic() > deadline or not self.running():
                    raise
                time.sleep(0.02)
