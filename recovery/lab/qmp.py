"""One QMP command to a QEMU process over its unix socket: the lab's hand on a VM's power switch."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, BinaryIO

#: QMP replies on loopback come in milliseconds; a slow one means QEMU is stuck.
QMP_TIMEOUT = 5.0


class QmpError(Exception):
    """QEMU refused a command, or its QMP socket did not answer."""


def qmp(path: Path, command: str, timeout: float = QMP_TIMEOUT, **arguments: Any) -> Any:
    """Run ``command`` on a fresh QMP connection and return its ``return`` value.

    A new connection per command keeps no state to go stale when QEMU exits;
    asynchronous events that arrive in between are skipped.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            stream = sock.makefile("rwb")
            _reply(stream, "greeting")
            _execute(stream, "qmp_capabilities", {})
            return _execute(stream, command, arguments)
    except OSError as exc:
        raise QmpError(f"QMP {command} on {path}: {exc}") from None


def _execute(stream: BinaryIO, command: str, arguments: dict[str, Any]) -> Any:
    request: dict[str, Any] = {"execute": command}
    if arguments:
        request["arguments"] = arguments
    stream.write(json.dumps(request).encode() + b"\n")
    stream.flush()
    reply = _reply(stream, command)
    if "error" in reply:
        raise QmpError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
    return reply.get("return")


def _reply(stream: BinaryIO, command: str) -> dict[str, Any]:
    """The next message that is not an event."""
    while True:
        line = stream.readline()
        if not line:
            raise QmpError(f"QMP {command}: QEMU closed the connection")
        message = json.loads(line)
        if "event" not in message:
            return message
