"""Notifications as signed JSON webhooks: run start, needs-operator, host failure and run end.

The body is signed with HMAC-SHA256 under a key the inventory references
(``X-Recovery-Signature: sha256=<hex>``), so a receiver can tell a run's own
notice from one anybody could POST. The body names the record's place in the
hash chain; host-chosen text in it is JSON data, and the one-line summary
for chat is made inert first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request

from recovery.config.inventory import WebhookCollector
from recovery.engine.journal import Record
from recovery.hostile import for_terminal

#: Header that carries the signature of the body.
SIGNATURE_HEADER = "X-Recovery-Signature"
#: Seconds for one POST, connecting included.
TIMEOUT = 5.0


def notification(record: Record) -> str | None:
    """Which notification a journal record is, if any."""
    if record.event in ("run_started", "run_resumed"):
        return "run_started"
    if record.event == "step_failed":
        return "needs_operator" if record.data.get("needs_operator") else "host_failed"
    if record.event == "run_finished":
        return "run_finished"
    return None


def body(record: Record, run_id: str) -> bytes:
    """The JSON a receiver gets: what happened, a line for people, and where it sits in the chain."""
    event = notification(record)
    payload = {"event": event, "run": run_id, "summary": _summary(event, record, run_id),
               "record": {"seq": record.seq, "ts": record.ts, "event": record.event, "step": record.step,
                          "host": record.host, "data": record.data},
               "journal_head": {"seq": record.seq, "hash": record.hash}}
    return json.dumps(payload, sort_keys=True, default=str).encode("ascii")


def signature(secret: str, data: bytes) -> str:
    """The header value: ``sha256=`` and the hex HMAC-SHA256 of exactly the bytes sent."""
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _summary(event: str | None, record: Record, run_id: str) -> str:
    data = record.data
    if event == "run_started":
        text = f"recovery run {run_id} {record.event.split('_')[1]} for {data.get('target', '?')}"
    elif event == "run_finished":
        text = (f"recovery run {run_id} finished {data.get('status')}: {data.get('done')} done, "
                f"{data.get('failed')} failed, {data.get('skipped')} skipped")
    else:
        need = " (needs the operator)" if event == "needs_operator" else ""
        text = f"{record.host}: step {record.step} failed{need}: {data.get('error', '')}"
    return for_terminal(text, 500, newlines=False)


class WebhookSender:
    """One endpoint: a POST per notification, any answer but 2xx counts as not delivered."""

    def __init__(self, collector: WebhookCollector, secret: str, run_id: str) -> None:
        self.collector = collector
        self.name = f"webhook {collector.url}"
        self._secret = secret
        self._run_id = run_id

    def wants(self, record: Record) -> bool:
        return notification(record) in self.collector.events

    def send(self, record: Record) -> None:
        """POST the signed body; raises ``OSError`` (``URLError``, ``HTTPError``) when it was not accepted."""
        data = body(record, self._run_id)
        request = urllib.request.Request(self.collector.url, data=data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "recovery",
            "X-Recovery-Event": str(notification(record)), SIGNATURE_HEADER: signature(self._secret, data)})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - the inventory's URL
            answer.read(4096)

    def close(self) -> None:
        """Nothing stays open between notifications."""
