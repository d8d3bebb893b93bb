from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import settings

from tests.support.sshd import Sshd, keygen, start_sshd

# Property tests check what is true, not how fast: a machine busy with lab guests made one example's
# first call take 315 ms, past hypothesis' 200 ms deadline. Speed is shown by bench/, not by tests.
settings.register_profile("recovery", deadline=None)
settings.load_profile("recovery")


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client") / "id_ed25519"
    keygen(path)
    return path


@pytest.fixture
def sshd_factory(tmp_path: Path, client_key: Path) -> Iterator[Callable[[str], Sshd]]:
    """Start real sshd processes; every one is stopped by its PID at teardown, pass or fail."""
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.fail("sshd is not installed (apt-get install openssh-server)")
    started: list[Sshd] = []

    def start(name: str) -> Sshd:
        daemon = start_sshd(name, tmp_path, client_key)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
