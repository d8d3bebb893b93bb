"""An interactive bash on a pseudo-terminal as a ConsoleStream: console sessions tested without a VM."""

from __future__ import annotations

import os
import pty
import select
import signal

SHELL = "/bin/bash"


class PtyShell:
    """``bash -i`` with readline and bracketed paste, as on a real console; killed by its PID on close."""

    def __init__(self, prompt: str = "root@pty:~# ") -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHELL": SHELL, "TERM": "xterm", "PS1": prompt}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the shell
            os.execve(SHELL, [SHELL, "--norc", "--noprofile", "-i"], env)

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        try:
            return os.read(self.fd, 65536)
        except OSError:
            raise EOFError("the shell's terminal closed") from None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)

    def settle(self, seconds: float = 0.3) -> bytes:
        """Everything the shell prints until it has been quiet for ``seconds``."""
        out = b""
        while chunk := self.read(seconds):
            out += chunk
        return out


class KeptOpen:
    """The shell as a console stream whose close leaves the shell running, as a BMC's console does:
    the test can look at the terminal after a session ended, or open another."""

    def __init__(self, shell: PtyShell) -> None:
        self.shell = shell

    def read(self, timeout: float) -> bytes:
        return self.shell.read(timeout)

    def write(self, data: bytes) -> None:
        self.shell.write(data)

    def close(self) -> None:
        pass
