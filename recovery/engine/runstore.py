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

from recovery import secrets as secrets_ref
from recovery.engine.journal import Journal


class RunStoreError(Exception):
    pass


class JournalMissing(RunStoreError):
    """A run directory without its journal: its record is broken, not merely absent."""


#: Where the operator's journal key is referenced (``file:PATH`` or ``env:NAME``), outside every run directory.
JOURNAL_KEY_ENV = "RECOVERY_JOURNAL_KEY"


def journal_key() -> bytes | None:
    """The operator's journal key, if one is configured (a bad reference is an error, never ignored)."""
    ref = os.environ.get(JOURNAL_KEY_ENV)
    if not ref:
        return None
    try:
        return secrets_ref.resolve(ref, JOURNAL_KEY_ENV).encode()
    except secrets_ref.SecretError as exc:
        raise RunStoreError(str(exc)) from None


def _journal(run_dir: Path, meta: dict[str, str]) -> Journal:
    """The run's journal, keyed as it was written; a keyed journal cannot be opened without its key."""
    key = journal_key()
    if meta.get("journal") == KEYED and key is None:
        raise RunStoreError(f"run {meta['id']} has a keyed journal: set {JOURNAL_KEY_ENV} to the key's reference")
    if meta.get("journal") != KEYED and key is not None:
        raise RunStoreError(f"run {meta['id']}: its journal is not keyed, but {JOURNAL_KEY_ENV} is set: "
                            "it was written without the key, or run.json was changed since")
    return Journal(run_dir / "journal.sqlite", key)


KEYED = "hmac-sha256"


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


def create(root: Path, target: str, inventory: Path, playbook: Path, limit: str | None = None) -> Run:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_id = f"{stamp}-{target}-{secrets.token_hex(2)}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    shutil.copyfile(inventory, run_dir / "inventory.toml")
    shutil.copyfile(playbook, run_dir / "playbook.toml")
    meta = {"id": run_id, "target": target, "inventory": str(inventory),
            "playbook": str(playbook), "created": stamp, "journal": KEYED if journal_key() else "sha256"}
    if limit:
        meta["limit"] = limit  # a resume plans exactly the hosts that were approved
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Run(run_id, run_dir, meta, _journal(run_dir, meta))


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
    if not (run_dir / "journal.sqlite").is_file():
        raise JournalMissing(f"run {run_id}: run.json is there but journal.sqlite is missing: "
                            "the journal was deleted (treat the run's record as broken)")
    return Run(run_id, run_dir, meta, _journal(run_dir, meta))


def list_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())
