"""Journal records as RFC 5424 syslog messages over TCP (RFC 6587 octet counting), TLS optional.

Each message carries the record's place in the hash chain (run, seq, hash,
prev) as structured data, so a collector holds every head of the chain as it
was written and a journal rewritten later on the machine no longer matches
it. The message text is the record as ASCII JSON: host-chosen text cannot
put a newline, a control character or a byte that is not ASCII on the wire.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time

from recovery.config.inventory import SyslogCollector
from recovery.engine.journal import Record

#: local0: the facility of an application's own log.
FACILITY = 16
#: Severity per event (RFC 5424 numbers); the rest are informational (6).
SEVERITY = {"step_failed": 3, "run_defect": 2, "run_interrupted": 4, "step_retrying": 4,
            "collector_unreachable": 4, "step_unreached": 5, "run_finished": 5}
#: The SD-ID of the chain's place: the private enterprise number set aside for examples (RFC 5612).
SD_ID = "journal@32473"
#: Longest message text; a record above it is sent without its data (its place in the chain still goes).
MESSAGE_LIMIT = 32 * 1024
#: Seconds to connect or to write before the collector counts as unreachable.
TIMEOUT = 3.0


def message(record: Record, run_id: str, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message: header, the chain's place as structured data, the record as JSON."""
    pri = FACILITY * 8 + SEVERITY.get(record.event, 6)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.ts)) + f".{int(record.ts % 1 * 1e6):06d}Z"
    header = f"<{pri}>1 {stamp} {_token(hostname, 255)} recover {procid} {_token(record.event, 32)}"
    params = {"run": run_id, "seq": str(record.seq), "hash": record.hash, "prev": record.prev}
    sd = f"[{SD_ID} " + " ".join(f'{name}="{_param(value)}"' for name, value in params.items()) + "]"
    return f"{header} {sd} {_body(record)}".encode("ascii")


def frame(msg: bytes) -> bytes:
    """Octet-counting framing (RFC 6587 3.4.1): the length, a space, the message; no delimiter to forge."""
    return b"%d %s" % (len(msg), msg)


def _body(record: Record) -> str:
    fields = {"seq": record.seq, "ts": record.ts, "event": record.event, "step": record.step,
              "host": record.host, "data": record.data, "prev": record.prev, "hash": record.hash}
    text = json.dumps(fields, sort_keys=True, default=str)
    if len(text) <= MESSAGE_LIMIT:
        return text
    fields["data"] = {"omitted": f"{len(text)} bytes: over the collector message limit; see the journal"}
    return json.dumps(fields, sort_keys=True, default=str)


def _token(value: str, limit: int) -> str:
    """A header field: printable ASCII without spaces (RFC 5424 PRINTUSASCII), or the nil value."""
    cleaned = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return cleaned or "-"


def _param(value: str) -> str:
    """A PARAM-VALUE: ASCII, with the three characters RFC 5424 reserves escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return escaped.encode("ascii", "backslashreplace").decode("ascii")


class SyslogSender:
    """One collector, one TCP (or TLS) connection, opened when needed and dropped on any error."""

    def __init__(self, collector: SyslogCollector, run_id: str) -> None:
        self.collector = collector
        self.name = f"syslog {collector.address}:{collector.port}"
        self._run_id = run_id
        self._hostname = socket.gethostname()
        self._pid = os.getpid()
        self._sock: socket.socket | None = None

    def wants(self, record: Record) -> bool:
        """Every record goes: the collector keeps the whole chain, not a selection."""
        return True

    def send(self, record: Record) -> None:
        """Write one framed message; an ``OSError`` (refused, reset, timeout, TLS) means not delivered."""
        data = frame(message(record, self._run_id, self._hostname, self._pid))
        try:
            self._connection().sendall(data)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connection(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.collector.address, self.collector.port), timeout=TIMEOUT)
            self._sock = self._tls(sock) if self.collector.tls else sock
        return self._sock

    def _tls(self, sock: socket.socket) -> socket.socket:
        context = ssl.create_default_context(cafile=self.collector.ca_file)
        try:
            return context.wrap_socket(sock, server_hostname=self.collector.address)
        except OSError:
            sock.close()
            raise
