"""A run's collectors: built from the inventory, fed by the journal, flushed and accounted for at the end.

The outage of a collector, its return and, at the end, what it received are
journaled like everything else a run does, so the report and `recover
status` say whether the off-host copy is complete.
"""

from __future__ import annotations

import time

from recovery import secrets
from recovery.config.inventory import Collectors
from recovery.engine.journal import Journal, JournalError, Record
from recovery.offsite.shipper import Delivery, Sender, Shipper
from recovery.offsite.syslog import SyslogSender
from recovery.offsite.webhook import WebhookSender

#: Seconds the end of a run waits, at most, for collectors that are up to receive what is queued.
FLUSH_WAIT = 5.0


def senders(collectors: Collectors, run_id: str, where: str) -> list[Sender]:
    """One sender per configured collector; webhook keys are resolved here (and so redacted everywhere)."""
    found: list[Sender] = [SyslogSender(c, run_id) for c in collectors.syslog]
    for index, hook in enumerate(collectors.webhook):
        key = secrets.resolve(hook.secret, f"{where}: collectors.webhook[{index}].secret")
        found.append(WebhookSender(hook, key, run_id))
    return found


class Shipping:
    """Every collector of one run, subscribed to its journal from ``start`` until ``finish``."""

    def __init__(self, journal: Journal, found: list[Sender]) -> None:
        self._journal = journal
        self._shippers = [Shipper(s, self._went_down, self._came_back) for s in found]
        journal.subscribe(self._offer)

    def finish(self, wait: float = FLUSH_WAIT) -> list[Delivery]:
        """Send what is queued (bounded by ``wait``), journal each collector's delivery, then stop.

        The delivery records themselves go out with whatever is left of the wait.
        """
        deadline = time.monotonic() + wait
        self._drain(deadline)
        for shipper in self._shippers:
            self._account(shipper.delivery())
        self._drain(deadline)
        self._journal.unsubscribe(self._offer)
        return [shipper.close() for shipper in self._shippers]

    def _offer(self, record: Record) -> None:
        for shipper in self._shippers:
            shipper.offer(record)

    def _drain(self, deadline: float) -> None:
        for shipper in self._shippers:
            shipper.drain(deadline)

    def _went_down(self, collector: str, error: str) -> None:
        self._append("collector_unreachable", collector=collector, error=error,
                     meaning="records are queued and retried; the run goes on")

    def _came_back(self, collector: str, dropped: int) -> None:
        self._append("collector_reachable", collector=collector, dropped=dropped)

    def _account(self, d: Delivery) -> None:
        self._append("collector_delivery", collector=d.collector, delivered=d.delivered, dropped=d.dropped,
                     pending=d.pending)

    def _append(self, event: str, **data: object) -> None:
        """Journal a collector's news; a journal that fails here has already stopped the run, so it is let be."""
        try:
            self._journal.append(event, **data)
        except JournalError:
            pass


def start(journal: Journal, collectors: Collectors, run_id: str, where: str) -> Shipping:
    """Ship ``journal`` to the inventory's collectors from now on (none configured: nothing happens)."""
    return Shipping(journal, senders(collectors, run_id, where))
