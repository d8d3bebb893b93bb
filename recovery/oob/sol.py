"""IPMI Serial-over-LAN: a host's serial console through its BMC, as a :class:`ConsoleStream`.

pyghmi hands console output to a callback from inside its event loop, and
that loop runs only while someone waits in it: :meth:`SolConsole.read` waits
there and returns what the callback collected. A console held by another
client is taken over (pyghmi's ``force``): during a recovery the operator's
tool must not be locked out by a stale session.
"""

from __future__ import annotations

import collections
import time
from types import TracebackType
from typing import Self

from pyghmi.ipmi.console import Console
from pyghmi.ipmi.private.session import Session

from recovery.oob.ipmi_endpoint import IpmiEndpoint, ipmi_failure

CONNECT_TIMEOUT = 10.0
#: Longest single wait in pyghmi's loop, so a deadline is never overshot by much.
_SLICE = 0.1


class SolConsole:
    """An activated SOL payload on one BMC; close it to free the BMC's console for others."""

    def __init__(self, endpoint: IpmiEndpoint, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self._via = f"IPMI Serial-over-LAN at {endpoint.where}"
        self._received: collections.deque[bytes] = collections.deque()
        self._failure: str | None = None
        self._console = Console(iohandler=self._deliver, force=True, **endpoint.login())
        self._wait_connected(connect_timeout)

    def __repr__(self) -> str:
        return f"SolConsole({self.endpoint.host}, {self.endpoint.where})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not self._received:
            self._check("read console")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            Session.wait_for_rsp(min(remaining, _SLICE))
        data = b"".join(self._received)
        self._received.clear()
        return data

    def write(self, data: bytes) -> None:
        self._check("write console")
        self._console.send_data(data)  # pyghmi returns once the BMC acknowledged it
        self._check("write console")

    def close(self) -> None:
        """Deactivate the SOL payload and log out."""
        session = self._console.ipmi_session
        self._console.close()
        if session is not None:
            session.logout()

    def _deliver(self, data: bytes | str | dict[str, object]) -> None:
        if isinstance(data, dict):
            if "error" in data:
                self._failure = str(data["error"])
            return
        self._received.append(data.encode() if isinstance(data, str) else bytes(data))

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._console.connected:
            self._check("open console")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise ipmi_failure(self.endpoint, self._via, "open console", "timeout")
            Session.wait_for_rsp(min(remaining, _SLICE))

    def _check(self, operation: str) -> None:
        if self._failure is not None:
            raise ipmi_failure(self.endpoint, self._via, operation, self._failure)
