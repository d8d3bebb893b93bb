"""Processes the lab started, found again from another process through what lab.json recorded.

A PID alone proves nothing once the process is gone: the number may belong
to someone else by now. A recorded process therefore carries a proof, a path
that only our process has on its command line (its private work directory);
it is signalled only while ``/proc/PID/cmdline`` still names that path.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE = 5.0


@dataclass(frozen=True)
class RecordedProcess:
    pid: int
    proof: str

    def alive(self) -> bool:
        """Running and still ours: its command line mentions the proof path."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return self.proof.encode() in cmdline

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; nothing if it is gone or not ours."""
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self.alive():
                return
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
