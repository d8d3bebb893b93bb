"""Calls made at once by several threads share round trips to the agent; each gets its own reply."""

from __future__ import annotations

import threading
import time

import pytest

from recovery.zfs import agent
from recovery.zfs.client import build_request
from recovery.zfs.pipeline import Pipeline, _Slot, side_by_side


def _echo(requests: list[dict]) -> list[dict]:
    return [{"echo": r["n"]} for r in requests]


def test_what_threads_ask_during_a_round_trip_leaves_together_with_the_next() -> None:
    trips: list[list[int]] = []
    first_in_flight = threading.Event()
    release = threading.Event()

    def exchange(requests: list[dict]) -> list[dict]:
        trips.append([r["n"] for r in requests])
        if len(trips) == 1:
            first_in_flight.set()
            release.wait(10)
        return _echo(requests)

    pipeline = Pipeline(exchange, budget=10_000)
    answers: dict[int, dict] = {}
    first = threading.Thread(target=lambda: answers.__setitem__(0, pipeline.submit({"n": 0})))
    first.start()
    first_in_flight.wait(10)
    others = [threading.Thread(target=lambda n=n: answers.__setitem__(n, pipeline.submit({"n": n})))
              for n in range(1, 6)]
    for thread in others:
        thread.start()
    while len(pipeline._queue) < 5:  # all five wait behind the round trip in flight
        time.sleep(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert trips[0] == [0] and sorted(trips[1]) == [1, 2, 3, 4, 5] and len(trips) == 2
    assert answers == {n: {"echo": n} for n in range(6)}


def test_a_round_trip_carries_no_more_than_its_depth_and_budget() -> None:
    pipeline = Pipeline(_echo, budget=60, depth=2)
    pipeline._queue = [_slot(1, 10), _slot(2, 10), _slot(3, 10)]
    assert [s.request["n"] for s in pipeline._take()] == [1, 2]
    pipeline._queue = [_slot(1, 10), _slot(2, 60)]  # over the budget together: the second waits its turn
    assert [s.request["n"] for s in pipeline._take()] == [1]
    pipeline._queue = [_slot(3, 500)]  # alone it goes, whatever its size
    assert [s.request["n"] for s in pipeline._take()] == [3]


def _slot(n: int, pad: int) -> _Slot:
    return _Slot({"n": n, "pad": "x" * pad})


def _dropped(requests: list[dict]) -> list[dict]:
    raise ConnectionError("line dropped")


def _one_reply(requests: list[dict]) -> list[dict]:
    return [{"echo": 1}]  # right for a request alone, wrong for several


@pytest.mark.parametrize("exchange, failed", [(_dropped, 4), (_one_reply, 3)], ids=["dropped", "one-reply"])
def test_a_failed_round_trip_fails_every_call_it_carried_and_none_hangs(exchange, failed: int) -> None:
    gate = threading.Event()

    def slow(requests: list[dict]) -> list[dict]:
        gate.wait(10)
        return exchange(requests)

    pipeline = Pipeline(slow, budget=10_000)
    errors: list[BaseException] = []

    def ask(n: int) -> None:
        try:
            pipeline.submit({"n": n})
        except Exception as exc:  # noqa: BLE001 - what each caller gets is the point
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) >= failed  # the first call may have left alone, where one reply is right


def test_side_by_side_keeps_the_order_and_raises_the_first_failure_after_all_ran() -> None:
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        if n in (2, 3):
            raise ValueError(f"item {n}")
        return n * 10

    assert side_by_side(lambda n: n * 10, [3, 1, 2]) == [30, 10, 20]
    with pytest.raises(ValueError, match="item 2"):
        side_by_side(work, [1, 2, 3, 4])
    assert sorted(ran) == [1, 2, 3, 4]


# -- through the real agent ------------------------------------------------------------------------


def test_the_agent_answers_each_request_of_a_batch_as_if_alone() -> None:
    members = [{"nonce": "a" * 16, "op": "ping", "args": {}}, {"nonce": "b" * 16, "op": "no-such-op", "args": {}}]
    reply = agent.handle(build_request("batch", {"requests": members}, "c" * 16))
    first, second = reply["result"]["replies"]
    assert first["ok"] and first["nonce"] == "a" * 16 and first["result"]["agent"] == 1
    assert not second["ok"] and second["nonce"] == "b" * 16 and "unknown operation" in second["error"]["message"]


@pytest.mark.parametrize("members, refused", [
    ([{"nonce": "a" * 16, "op": "batch", "args": {}}], "not a batch"),
    ([{"nonce": "x", "op": "ping", "args": {}}], "no valid nonce"),
    (["ping"], "not a batch"),
    ([], "1 to 16"),
    ([{"nonce": "a" * 16, "op": "ping"}] * 17, "1 to 16"),
])
def test_the_agent_refuses_a_batch_it_cannot_answer_request_by_request(members: list, refused: str) -> None:
    reply = agent.handle(build_request("batch", {"requests": members}, "c" * 16))
    assert not reply["ok"] and refused in reply["error"]["message"]
