"""One collector's queue and sender thread: the run hands records over and never waits for the network.

``offer`` is called under the journal's lock for every record, so it only
appends to a bounded queue (full: the oldest record is dropped and counted).
A thread of its own sends, retrying with tenacity's exponential back-off
while the collector is down; the outage and the return are reported once
each through callbacks (the run journals them), never once per attempt, so a
down collector cannot feed itself an endless stream of records about itself.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from recovery.engine.journal import Record

#: Records waiting per collector; past it the oldest are dropped (a bound on memory, not on the run).
QUEUE_LIMIT = 2000
#: Back-off between attempts while a collector is down: 0.2 s, doubling, at most this many seconds.
BACKOFF_MAX = 10.0


class Sender(Protocol):
    """A collector's transport: send one record or raise; nothing else."""

    name: str

    def wants(self, record: Record) -> bool: ...

    def send(self, record: Record) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """What became of the records handed to one collector."""

    collector: str
    delivered: int
    dropped: int
    pending: int


class Shipper:
    """Sends the records one ``Sender`` wants, in order, from a daemon thread."""

    def __init__(self, sender: Sender, on_down: Callable[[str, str], None],
                 on_up: Callable[[str, int], None], limit: int = QUEUE_LIMIT) -> None:
        self.sender = sender
        self._on_down, self._on_up = on_down, on_up
        self._queue: deque[Record] = deque()
        self._limit = limit
        self._cond = threading.Condition()
        self._abandon = threading.Event()  # stop now: what is still queued is not delivered
        self._busy = False
        self._down = False
        self.delivered = self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=f"ship {sender.name}", daemon=True)
        self._thread.start()

    def offer(self, record: Record) -> None:
        """Queue a record if this collector wants it; returns at once whatever the network does."""
        if not self.sender.wants(record):
            return
        with self._cond:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(record)
            self._cond.notify_all()

    def drain(self, deadline: float) -> None:
        """Wait until everything queued is sent, the collector is down, or ``deadline`` (monotonic) passes.

        A collector known to be down is not waited for: it would only cost the
        run its remaining time and deliver nothing.
        """
        with self._cond:
            while (self._queue or self._busy) and not self._down:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def delivery(self) -> Delivery:
        with self._cond:
            pending = len(self._queue) + self._busy
            return Delivery(self.sender.name, self.delivered, self.dropped, pending)

    def close(self, wait: float = 1.0) -> Delivery:
        """Stop sending (``drain`` first to send what is queued); what was not sent by now counts as dropped."""
        self._abandon.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(wait)
        with self._cond:
            self.dropped += len(self._queue)
            self._queue.clear()
        self.sender.close()
        return self.delivery()

    # -- the sender thread --------------------------------------------------------

    def _loop(self) -> None:
        while (record := self._next()) is not None:
            sent = self._send(record)
            with self._cond:
                self._busy = False
                if sent:
                    self.delivered += 1
                else:
                    self.dropped += 1
                self._cond.notify_all()

    def _next(self) -> Record | None:
        with self._cond:
            while not self._queue and not self._abandon.is_set():
                self._cond.wait()
            if self._abandon.is_set():
                return None
            self._busy = True
            return self._queue.popleft()

    def _send(self, record: Record) -> bool:
        retrying = Retrying(
            wait=wait_exponential(multiplier=0.2, max=BACKOFF_MAX),
            retry=retry_if_exception_type(Exception),
            stop=lambda _: self._abandon.is_set(),
            sleep=self._abandon.wait,
            before_sleep=self._went_down,
            reraise=True,
        )
        try:
            retrying(self.sender.send, record)
        except Exception:  # noqa: BLE001 - abandoned at close; whatever the transport raised, it was not delivered
            return False
        self._came_back()
        return True

    def _went_down(self, attempt: RetryCallState) -> None:
        """The first failed attempt of an outage: report it (before a drain may give up on this collector)."""
        if self._down:
            return
        error = attempt.outcome.exception() if attempt.outcome else None
        self._on_down(self.sender.name, f"{type(error).__name__}: {error}")
        with self._cond:
            self._down = True
            self._cond.notify_all()  # a drain waiting for this collector stops waiting

    def _came_back(self) -> None:
        if not self._down:
            return
        with self._cond:
            self._down = False
        self._on_up(self.sender.name, self.dropped)
