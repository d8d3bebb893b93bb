"""Where runs live: one directory per run, holding its journal and a copy of its config.

The copy of inventory and playbook (references only, never secrets) makes
`recover resume` run exactly the plan that was approved, even if the files in
the working tree changed since.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from recovery.engine.journal import Journal


class RunStoreError(Exception):
    pass


def runs_root(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("RECOVERY_RUNS") or "runs")


@dataclass
class Run:
    id: str
    dir: Path
    meta: dict[str, str]
    journal: Journal

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.toml"

    @property
    def playbook_path(self) -> Path:
        return self.dir / "playbook.toml"

    def lock(self) -> None:
        """Hold the run for this process; a second `recover resume` of the same run is refused."""
        self._lock_file = open(self.dir / "lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunStoreError(f"run {self.id} is being executed by another recover process") from None
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()


def create(root: Path, target: str, inventory: Path, playbook: Path) -> Run:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_id = f"{stamp}-{target}-{secrets.token_hex(2)}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    shutil.copyfile(inventory, run_dir / "inventory.toml")
    shutil.copyfile(playbook, run_dir / "playbook.toml")
    meta = {"id": run_id, "target": target, "inventory": str(inventory),
            "playbook": str(playbook), "created": stamp}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Run(run_id, run_dir, meta, Journal(run_dir / "journal.sqlite"))


def open_run(root: Path, run_id: str | None) -> Run:
    """Open a run by id, or the newest run when ``run_id`` is None."""
    if run_id is None:
        ids = list_ids(root)
        if not ids:
            raise RunStoreError(f"no runs in {root}")
        run_id = ids[-1]
    run_dir = root / run_id
    if not (run_dir / "run.json").is_file():
        known = ", ".join(list_ids(root)[-5:]) or "none"
        raise RunStoreError(f"no run '{run_id}' in {root} (recent: {known})")
    meta = json.loads((run_dir / "run.json").read_text())
    return Run(run_id, run_dir, meta, Journal(run_dir / "journal.sqlite"))


def list_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())
