"""Write an inventory and a playbook for test hosts, and call the `recover` CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from tests.support.sshd import Sshd


def write_inventory(path: Path, daemons: Iterable[Sshd], extra: str = "") -> Path:
    daemons = list(daemons)
    names = ", ".join(f'"{d.name}"' for d in daemons)
    text = "\n".join(d.inventory_host() for d in daemons)
    path.write_text(f"{text}\n[groups]\nweb = [{names}]\n{extra}")
    return path


def recover(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "recovery", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
