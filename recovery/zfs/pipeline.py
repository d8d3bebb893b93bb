"""Calls that threads make at the same time share one round trip to the host's agent.

A round trip costs hundreds of milliseconds on a slow guest (more on a serial
console, which is one line: more processes cannot overlap there), while the
agent answers most operations in a few. So independent work runs in threads
(one per dataset, see :func:`side_by_side`), and whatever they ask while a
round trip is under way leaves together with the next one: one thread carries
the queue to the host (the leader) while the others wait for their answers.
Nothing is held back to wait for company: a lone call leaves at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

Request = dict[str, Any]
Reply = dict[str, Any]
#: Sends requests in one round trip; one reply each, in order, or raises for them all.
Exchange = Callable[[list[Request]], list[Reply]]

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Most requests one round trip carries (the agent takes up to 16 in a batch).
DEPTH = 8
#: Threads that work side by side on one host: its agent runs four requests at once.
WIDTH = 4


class _Slot:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.size = len(json.dumps(request))
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> Reply:
        if self.error is not None:
            raise self.error
        assert self.reply is not None  # done without an error means answered
        return self.reply


class Pipeline:
    """Hands requests to ``exchange``, several per round trip when several threads ask at once.

    ``budget`` bounds the JSON size of what one round trip carries (the request
    rides on a command line); a request alone always goes, whatever its size.
    """

    def __init__(self, exchange: Exchange, budget: int, depth: int = DEPTH) -> None:
        self._exchange, self._budget, self._depth = exchange, budget, depth
        self._queue: list[_Slot] = []
        self._busy = False
        self._changed = threading.Condition()

    def submit(self, request: Request) -> Reply:
        """This request's reply (or the error of the round trip that carried it)."""
        slot = _Slot(request)
        with self._changed:
            self._queue.append(slot)
            while self._busy and not slot.done:
                self._changed.wait()
            if slot.done:
                return slot.outcome()
            self._busy = True
        try:
            while not slot.done:
                with self._changed:
                    batch = self._take()
                self._carry(batch)
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
        return slot.outcome()

    def _take(self) -> list[_Slot]:
        batch = [self._queue.pop(0)]
        size = batch[0].size
        while self._queue and len(batch) < self._depth and size + self._queue[0].size <= self._budget:
            size += self._queue[0].size
            batch.append(self._queue.pop(0))
        return batch

    def _carry(self, batch: list[_Slot]) -> None:
        """One round trip; its replies, or its error, go to every slot it carried."""
        outcomes: list[tuple[Reply | None, BaseException | None]]
        try:
            replies = self._exchange([slot.request for slot in batch])
            if len(replies) != len(batch):
                raise ValueError(f"{len(replies)} replies for {len(batch)} requests")
            outcomes = [(reply, None) for reply in replies]
        except BaseException as exc:  # noqa: BLE001 - every caller it carried gets it, the leader too
            outcomes = [(None, exc)] * len(batch)
        with self._changed:
            for slot, (reply, error) in zip(batch, outcomes):
                slot.reply, slot.error, slot.done = reply, error, True
            self._changed.notify_all()


def side_by_side(work: Callable[[_T], _R], items: Iterable[_T], width: int = WIDTH) -> list[_R]:
    """``work`` on each item in threads (independent work on one host), results in order.

    Every item is worked on even when one fails; the first failure (in item
    order) is then raised, so what the others did is not lost silently: it is
    on the host, and the step is re-checked when it runs again.
    """
    chosen: Sequence[_T] = list(items)
    if len(chosen) <= 1:
        return [work(item) for item in chosen]
    with ThreadPoolExecutor(max_workers=min(width, len(chosen))) as pool:
        futures = [pool.submit(work, item) for item in chosen]
    return [future.result() for future in futures]
