"""Real collectors on 127.0.0.1 for the off-host tests: rsyslogd with its TCP input, and a webhook receiver."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.sshd import free_port

RSYSLOGD = "/usr/sbin/rsyslogd"
#: rsyslog writes what the RFC 5424 parser found: MSGID, STRUCTURED-DATA, MSG (the record as JSON).
_TEMPLATE = "%msgid% %structured-data% %msg%\\n"


@dataclass
class Rsyslog:
    port: int
    output: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        return self.output.read_text().splitlines() if self.output.exists() else []

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        """The lines written so far, once there are ``count`` (rsyslog writes its file asynchronously)."""
        deadline = time.monotonic() + timeout
        while len(self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.lines()

    def stop(self) -> None:
        """Stop the daemon this test started, by its PID."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def start_rsyslog(directory: Path) -> Rsyslog:
    """rsyslogd in the foreground with only a TCP input on 127.0.0.1 and a file output."""
    directory.mkdir(parents=True, exist_ok=True)
    port, output, config = free_port(), directory / "received.log", directory / "rsyslog.conf"
    config.write_text("\n".join([
        f'global(workDirectory="{directory}" maxMessageSize="64k")',
        'module(load="imtcp")',
        f'input(type="imtcp" address="127.0.0.1" port="{port}")',
        f'template(name="fields" type="string" string="{_TEMPLATE}")',
        f'*.* action(type="omfile" file="{output}" template="fields")', ""]))
    log = open(directory / "rsyslogd.log", "wb")
    process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
                               stdout=log, stderr=subprocess.STDOUT)
    _wait_listening(port, process)
    return Rsyslog(port, output, process)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"rsyslogd did not listen on 127.0.0.1:{port}")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every POST it gets and answers ``status``."""

    status: int = 204
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: the test reads what was received."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
