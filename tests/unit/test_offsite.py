"""Off-host shipping without the network: message shape, signatures, and a run that never waits on a collector."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from recovery.config.inventory import Collectors
from recovery.engine.journal import GENESIS, Journal, Record
from recovery.offsite import collectors as offsite
from recovery.offsite import shipper, syslog, webhook
from recovery.offsite.shipper import Shipper

HOSTILE = 'x"] \\ \n\x1b[2J é\u202e'


def record(seq: int = 1, event: str = "step_failed", **data: object) -> Record:
    return Record(seq, 1700000000.25, event, "restore", "eu-web", data, GENESIS, f"{seq:064x}")


def test_syslog_message_is_rfc5424_ascii_with_the_chain_in_structured_data() -> None:
    msg = syslog.message(record(error=HOSTILE), "run-1", "orch host", 42).decode("ascii")
    assert msg.startswith("<131>1 2023-11-14T22:13:20.250000Z orchhost recover 42 step_failed "
                          f'[journal@32473 run="run-1" seq="1" hash="{1:064x}" prev="{GENESIS}"] ')
    assert "\n" not in msg and "\x1b" not in msg
    body = json.loads(msg.split("] ", 1)[1])
    assert body["data"]["error"] == HOSTILE and body["hash"] == f"{1:064x}"
    assert syslog.frame(b"abc") == b"3 abc"


def test_syslog_param_values_escape_what_rfc5424_reserves() -> None:
    assert syslog._param('a"b]c\\d é') == 'a\\"b\\]c\\\\d \\xe9'


def test_a_huge_record_still_ships_its_place_in_the_chain() -> None:
    msg = syslog.message(record(blob="x" * (syslog.MESSAGE_LIMIT + 1)), "r", "h", 1)
    assert len(msg) < syslog.MESSAGE_LIMIT and b'seq="1"' in msg and b"omitted" in msg


def test_webhook_notifications_and_signature() -> None:
    assert webhook.notification(record(needs_operator=True)) == "needs_operator"
    assert webhook.notification(record(needs_operator=False)) == "host_failed"
    assert webhook.notification(record(event="run_resumed")) == "run_started"
    assert webhook.notification(record(event="step_succeeded")) is None
    data = webhook.body(record(error=HOSTILE, needs_operator=False), "run-1")
    payload = json.loads(data)
    assert payload["journal_head"] == {"seq": 1, "hash": f"{1:064x}"}
    assert "\n" not in payload["summary"] and "\x1b" not in payload["summary"]
    expected = hmac.new(b"k", data, hashlib.sha256).hexdigest()
    assert webhook.signature("k", data) == f"sha256={expected}"


@pytest.mark.parametrize("table, error", [
    ({"syslog": [{"address": "a", "ca_file": "/ca"}]}, "only used with 'tls = true'"),
    ({"webhook": [{"url": "https://x", "secret": "plain"}]}, "a secret must be a reference"),
    ({"webhook": [{"url": "ftp://x", "secret": "env:K"}]}, "should match pattern"),
    ({"webhook": [{"url": "https://x", "secret": "env:K", "events": ["run_ended"]}]}, "run_finished"),
    ({"syslog": [{"adress": "a"}]}, "did you mean 'address'"),
])
def test_collectors_config_is_strict(table: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Collectors.model_validate(table)


class FakeSender:
    """A collector that is down until ``up`` is set; ``gate`` holds every send while cleared."""

    name = "fake"

    def __init__(self, up: bool = True) -> None:
        self.up = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.sending = threading.Event()
        self.sent: list[int] = []
        if up:
            self.up.set()

    def wants(self, rec: Record) -> bool:
        return True

    def send(self, rec: Record) -> None:
        self.sending.set()
        self.gate.wait(5)
        if not self.up.is_set():
            raise ConnectionRefusedError("refused")
        self.sent.append(rec.seq)

    def close(self) -> None:
        pass


def news() -> tuple[list[tuple[str, str]], list[tuple[str, int]]]:
    return [], []


def test_offer_never_waits_and_a_full_queue_drops_the_oldest() -> None:
    sender = FakeSender()
    sender.gate.clear()  # the collector hangs
    downs, ups = news()
    ship = Shipper(sender, lambda *a: downs.append(a), lambda *a: ups.append(a), limit=3)
    ship.offer(record(1))
    assert sender.sending.wait(5)
    began = time.monotonic()
    for seq in range(2, 11):
        ship.offer(record(seq))
    assert time.monotonic() - began < 0.1
    sender.gate.set()
    ship.drain(time.monotonic() + 5)
    assert sender.sent == [1, 8, 9, 10]  # 1 was in flight; 2..7 dropped as newer ones came
    assert ship.close() == shipper.Delivery("fake", 4, 6, 0)


def test_an_outage_is_reported_once_and_its_end_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shipper, "BACKOFF_MAX", 0.05)
    sender = FakeSender(up=False)
    downs, ups = news()
    ship = Shipper(sender, lambda *a: downs.append(a), lambda *a: ups.append(a))
    for seq in range(1, 4):
        ship.offer(record(seq))
    began = time.monotonic()
    ship.drain(time.monotonic() + 5)  # a collector known to be down is not waited for
    assert time.monotonic() - began < 1
    time.sleep(0.5)  # several attempts
    assert downs == [("fake", "ConnectionRefusedError: refused")]
    sender.up.set()
    deadline = time.monotonic() + 5
    while len(sender.sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender.sent == [1, 2, 3] and ups == [("fake", 0)]
    assert ship.close().delivered == 3


def test_close_gives_up_on_a_collector_that_is_down() -> None:
    ship = Shipper(FakeSender(up=False), lambda *a: None, lambda *a: None)
    for seq in range(1, 4):
        ship.offer(record(seq))
    began = time.monotonic()
    delivery = ship.close()
    assert time.monotonic() - began < 1.5 and delivery.delivered == 0 and delivery.dropped == 3


def test_journal_observers_see_every_record_in_order_and_cannot_break_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    seen: list[int] = []

    def broken(rec: Record) -> None:
        raise RuntimeError("observer defect")

    journal.subscribe(broken)
    journal.subscribe(lambda rec: seen.append(rec.seq))
    threads = [threading.Thread(target=lambda: [journal.append("x") for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(1, 81)) and journal.verify() == []


def test_the_outage_of_a_collector_is_journaled_and_so_shipped_to_the_others(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    down, up = FakeSender(up=False), FakeSender()
    down.name = "down"
    shipping = offsite.Shipping(journal, [down, up])
    journal.append("run_started")
    deliveries = shipping.finish(wait=2)
    events = [r.event for r in journal.records()]
    assert events == ["run_started", "collector_unreachable", "collector_delivery", "collector_delivery"]
    assert up.sent == [1, 2, 3, 4]  # the outage and both accounts reached the collector that is up
    assert [(d.collector, d.delivered) for d in deliveries] == [("down", 0), ("fake", 4)]
    journal.append("after")  # no longer subscribed
    assert up.sent == [1, 2, 3, 4]
