"""Engine overhead per step: 200 no-op `run` steps against one loopback sshd.

Overhead = (wall time of the run - the SSH round trips the steps measured) / steps,
i.e. journal writes (fsync'd) + dispatch + rendering. Goal: <= 20 ms per step.
Usage: python bench/engine_overhead.py [STEPS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import recovery.steps  # noqa: E402,F401
from recovery.engine import control, runstore  # noqa: E402
from recovery.engine.access import ssh_target  # noqa: E402
from recovery.transport.ssh import SshSession  # noqa: E402
from tests.support.project import write_inventory  # noqa: E402
from tests.support.sshd import keygen, start_sshd  # noqa: E402


class QuietUI:
    def event(self, step: str, host: str, status: str, detail: str = "") -> None:
        pass

    def acknowledge(self, prompt: str) -> bool:
        return True


def main(steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        key = base / "id_ed25519"
        keygen(key)
        daemon = start_sshd("bench", base, key)
        try:
            measure(base, daemon, steps)
        finally:
            daemon.stop()


def measure(base: Path, daemon, steps: int) -> None:
    inventory_path = write_inventory(base / "inventory.toml", [daemon])
    playbook_path = base / "pb.toml"
    playbook_path.write_text("".join(
        f'[[steps]]\nkind = "run"\nname = "noop-{i}"\nparams = {{ command = "true" }}\n'
        for i in range(steps)))
    inventory, plan = control.prepare(inventory_path, playbook_path, "bench")
    # raw round trips on one open session, for comparison
    with SshSession(ssh_target(inventory, "bench")) as session:
        raw = [session.run("true", timeout=10).duration for _ in range(50)]
    run = runstore.create(base / "runs", "bench", inventory_path, playbook_path)
    start = time.perf_counter()
    outcome = control.execute(run, plan, inventory, QuietUI(), "run_started")
    wall = time.perf_counter() - start
    assert outcome.status == "done", outcome
    ssh_time = sum(r.data["outputs"]["duration"] for r in run.journal.records()
                   if r.event == "step_succeeded")
    overhead_ms = (wall - ssh_time) / steps * 1000
    print(f"steps                          {steps}")
    print(f"wall time of the run           {wall:8.3f} s")
    print(f"SSH round trips (in the run)   {ssh_time:8.3f} s  ({ssh_time / steps * 1000:.2f} ms/step)")
    print(f"raw round trip, same session   {statistics.median(raw) * 1000:8.2f} ms median of 50")
    print(f"engine overhead per step       {overhead_ms:8.2f} ms  (goal <= 20 ms)")
    print(f"journal records                {len(run.journal.records())}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
