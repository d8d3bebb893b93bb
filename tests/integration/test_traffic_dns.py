"""The DNS driver against a real BIND9 on 127.0.0.1: divert, restore, and every refusal leaving the zone as it was."""

from __future__ import annotations

import base64
import json
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from recovery.lab.bind import LabDns
from recovery.lab.ports import free_port
from recovery.traffic.base import TrafficConflict, TrafficError, TrafficRefused, TrafficUnreachable
from recovery.traffic.dns import DnsDriver, DnsRecord, DnsServer, TsigKey

pytestmark = pytest.mark.integration

MIRROR = ("127.0.0.80",)
WRONG_SECRET = base64.b64encode(b"w" * 32).decode()


def _server(lab: LabDns, secret: str | None = None, key_name: str | None = None, port: int | None = None) -> DnsServer:
    key = TsigKey(key_name or lab.key_name, lab.algorithm, secret or lab.secret)
    return DnsServer(lab.host, port or lab.port, lab.zone, key, timeout=0.5)


def _record(**changes: object) -> DnsRecord:
    return DnsRecord(name="www", mirror=MIRROR, **changes)  # type: ignore[arg-type]


def _ask(lab: LabDns, name: str, rdtype: str) -> dns.message.Message:
    """Query the authoritative server directly, independent of the driver."""
    return dns.query.udp(dns.message.make_query(name, rdtype), lab.host, port=lab.port, timeout=2)


def _addresses(lab: LabDns) -> list[str]:
    answer = _ask(lab, "www.lab.test.", "A")
    return sorted(rdata.to_text() for rrset in answer.answer for rdata in rrset)


def _serial(lab: LabDns) -> int:
    return _ask(lab, "lab.test.", "SOA").answer[0][0].serial


def _hand_change(lab: LabDns, addresses: list[str]) -> None:
    """What an administrator does by hand with nsupdate."""
    update = dns.update.UpdateMessage(lab.zone, keyring=dns.tsig.Key(lab.key_name, lab.secret, lab.algorithm))
    update.replace("www", 300, "A", *addresses)
    assert dns.query.tcp(update, lab.host, port=lab.port, timeout=2).rcode() == dns.rcode.NOERROR


def test_divert_then_restore_verified_by_query(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record(ttl=30)
    before = driver.state(record)
    assert before.destinations == lab_dns.web_addresses and before.ttl == 300

    after = driver.divert(record, before)

    assert _addresses(lab_dns) == list(MIRROR)
    assert _ask(lab_dns, "www.lab.test.", "A").answer[0].ttl == 30
    assert after.serial == _serial(lab_dns) and after.serial > before.serial
    restored = driver.restore(record, after, before)
    assert _addresses(lab_dns) == list(lab_dns.web_addresses)
    assert restored.same_routes(before) and restored.ttl == 300 and restored.serial > after.serial


def test_divert_again_after_a_crash_sends_nothing(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record()
    before = driver.state(record)
    driver.divert(record, before)
    serial = _serial(lab_dns)

    again = driver.divert(record, before)

    assert again.destinations == MIRROR and _serial(lab_dns) == serial


def test_ttl_lowered_ahead_keeps_the_addresses(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record(ttl=5)
    lowered = driver.lower_ttl(record, driver.state(record))
    assert lowered.ttl == 5 and lowered.destinations == lab_dns.web_addresses
    assert _ask(lab_dns, "www.lab.test.", "A").answer[0].ttl == 5


def test_restore_of_only_healthy_hosts(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record()
    before = driver.state(record)
    after = driver.divert(record, before)
    driver.restore(record, after, before.without([lab_dns.web_addresses[1]]))
    assert _addresses(lab_dns) == [lab_dns.web_addresses[0]]


def test_restore_to_an_empty_record_is_refused(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record()
    before = driver.state(record)
    after = driver.divert(record, before)
    with pytest.raises(TrafficError, match="empty record"):
        driver.restore(record, after, before.without(lab_dns.web_addresses))
    assert _addresses(lab_dns) == list(MIRROR)


def test_unsigned_update_is_refused(lab_dns: LabDns) -> None:
    update = dns.update.UpdateMessage(lab_dns.zone)
    update.replace("www", 60, "A", "127.0.0.66")
    response = dns.query.tcp(update, lab_dns.host, port=lab_dns.port, timeout=2)
    assert response.rcode() == dns.rcode.REFUSED
    assert _addresses(lab_dns) == list(lab_dns.web_addresses)


def test_wrong_tsig_secret_is_refused_and_nothing_changes(lab_dns: LabDns) -> None:
    serial = _serial(lab_dns)
    good = DnsDriver(_server(lab_dns))
    before = good.state(_record())
    driver = DnsDriver(_server(lab_dns, secret=WRONG_SECRET))

    with pytest.raises(TrafficRefused) as refused:
        driver.divert(_record(), before)

    message = str(refused.value)
    assert "BadSignature" in message and lab_dns.key_name in message and f"127.0.0.1:{lab_dns.port}" in message
    assert WRONG_SECRET not in message and lab_dns.secret not in message
    assert _addresses(lab_dns) == list(lab_dns.web_addresses) and _serial(lab_dns) == serial


def test_unknown_tsig_key_is_refused(lab_dns: LabDns) -> None:
    before = DnsDriver(_server(lab_dns)).state(_record())
    driver = DnsDriver(_server(lab_dns, key_name="stranger-key"))
    with pytest.raises(TrafficRefused, match="stranger-key.*BadKey"):
        driver.divert(_record(), before)
    assert _addresses(lab_dns) == list(lab_dns.web_addresses)


def test_record_changed_by_hand_after_the_plan_is_not_overwritten(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record()
    planned = driver.state(record)
    _hand_change(lab_dns, ["127.0.0.99"])
    serial = _serial(lab_dns)

    with pytest.raises(TrafficConflict, match=r"www\.lab\.test\..*127\.0\.0\.99"):
        driver.divert(record, planned)

    assert _addresses(lab_dns) == ["127.0.0.99"] and _serial(lab_dns) == serial


def test_change_racing_the_update_fails_the_servers_prerequisite(
    lab_dns: LabDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand change lands after the driver's own read: BIND's prerequisite check stops the update."""
    driver, record = DnsDriver(_server(lab_dns)), _record()
    planned = driver.state(record)
    _hand_change(lab_dns, ["127.0.0.99"])
    monkeypatch.setattr(driver, "state", lambda service: planned)

    with pytest.raises(TrafficConflict, match="prerequisite failed \\(NXRRSET\\)"):
        driver.divert(record, planned)

    assert _addresses(lab_dns) == ["127.0.0.99"]


def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    key = TsigKey("k", "hmac-sha256", WRONG_SECRET)
    driver = DnsDriver(DnsServer("127.0.0.1", port, "lab.test", key, timeout=0.3))
    started = time.monotonic()
    with pytest.raises(TrafficUnreachable, match=f"127.0.0.1:{port}.*no answer within 0.3 s"):
        driver.state(_record())
    assert time.monotonic() - started < 2


def test_tsig_secret_never_shown(lab_dns: LabDns) -> None:
    server = _server(lab_dns)
    driver, record = DnsDriver(server), _record()
    before = driver.state(record)
    after = driver.divert(record, before)
    shown = [repr(server), repr(vars(driver)), repr(lab_dns), repr(before), repr(after), json.dumps(after.as_dict())]
    with pytest.raises(TrafficConflict) as conflict:
        driver.divert(_record(ttl=5), before)
    shown.append(str(conflict.value))
    with pytest.raises(TrafficError) as malformed:
        DnsDriver(_server(lab_dns, secret="not base64!"))
    shown.append(str(malformed.value))
    assert all(lab_dns.secret not in text for text in shown)
    assert lab_dns.secret not in str(TrafficError(f"leaked {lab_dns.secret}"))


def test_journal_form_round_trips(lab_dns: LabDns) -> None:
    driver, record = DnsDriver(_server(lab_dns)), _record()
    before = driver.state(record)
    stored = type(before).from_dict(json.loads(json.dumps(before.as_dict())))
    assert stored == before
    assert driver.divert(record, stored).destinations == MIRROR


def test_answer_is_read_from_the_authoritative_server(lab_dns: LabDns) -> None:
    answer = _ask(lab_dns, "www.lab.test.", "A")
    assert answer.flags & dns.flags.AA and answer.answer[0].rdtype == dns.rdatatype.A


def test_bad_mirror_address_is_refused_before_anything_is_sent(lab_dns: LabDns) -> None:
    driver = DnsDriver(_server(lab_dns))
    record = DnsRecord(name="www", mirror=("not-an-address",))
    with pytest.raises(TrafficError, match="bad address in \\['not-an-address'\\]"):
        driver.divert(record, driver.state(record))
    assert _addresses(lab_dns) == list(lab_dns.web_addresses)
