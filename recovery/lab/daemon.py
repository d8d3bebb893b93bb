"""A server the lab runs as a child process: own temp dir, readiness wait, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self, Sequence

from recovery.hostile import for_terminal

STOP_GRACE = 5.0


class LabError(Exception):
    """A lab server could not be started or did not become ready."""


class LabDaemon:
    """Base for lab servers: subclasses write their config and say when they answer.

    Only the process this object started is ever signalled, through the PID
    it got from ``Popen``; the temp dir holding config, sockets and logs is
    removed on stop, so nothing outlives a test run.
    """

    name = "daemon"
    ready_timeout = 10.0

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Self:
        """Write the config into a fresh temp dir, start the server and wait until it answers."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"recovery-lab-{self.name}-"))
        try:
            self._launch(self._prepare(self.workdir))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the started process (kill after a grace period) and remove the temp dir."""
        process, self._process = self._process, None
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the server's own output, for error messages."""
        if not self.workdir:
            return ""
        try:
            data = (self.workdir / "daemon.log").read_bytes()
        except OSError:
            return ""
        return for_terminal(data[-limit:], limit)

    def _prepare(self, workdir: Path) -> Sequence[str]:
        """Write config files into ``workdir`` and return the server's argv."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the server answers on its socket."""
        raise NotImplementedError

    def _launch(self, argv: Sequence[str]) -> None:
        assert self.workdir is not None
        with open(self.workdir / "daemon.log", "wb") as log:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise LabError(f"{self.name} exited with status {code}:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.02)
        raise LabError(f"{self.name} did not answer within {self.ready_timeout:.0f} s:\n{self.log_tail()}")
