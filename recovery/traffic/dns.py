"""DNS traffic driver: RFC 2136 dynamic updates signed with TSIG, as compare-and-swap.

Every update carries a value-dependent prerequisite (RFC 2136 §2.4.2): the
record must still hold exactly the addresses the caller saw, or the server
applies nothing and answers NXRRSET. A record someone changed by hand is
therefore reported, never overwritten. Success is only claimed once the
authoritative server answers the new addresses and its zone serial grew.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.serial
import dns.tsig
import dns.update

from recovery.secrets import REDACTOR
from recovery.traffic.base import (
    TrafficConflict,
    TrafficError,
    TrafficRefused,
    TrafficState,
    TrafficUnreachable,
    TrafficUnverified,
)

POLL_INTERVAL = 0.01

T = TypeVar("T")


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key; ``secret`` is the resolved base64 value and never shown in a repr."""

    name: str
    algorithm: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class DnsServer:
    """The authoritative server that accepts updates for ``zone``."""

    host: str
    port: int
    zone: str
    key: TsigKey
    timeout: float = 2.0


@dataclass(frozen=True)
class DnsRecord:
    """The service's record: ``name`` (relative to the zone or absolute), the mirror's addresses.

    ``ttl`` is written with every change; :meth:`DnsDriver.lower_ttl` applies
    it ahead of time so resolvers forget the old addresses quickly once diverted.
    """

    name: str
    mirror: tuple[str, ...]
    ttl: int = 60
    rdtype: str = "A"
    verify_timeout: float = 5.0


class DnsDriver:
    """Diverts and restores one zone's records on one authoritative server."""

    def __init__(self, server: DnsServer) -> None:
        REDACTOR.add(server.key.secret)
        _tsig_key(server.key)  # fail now on a malformed key, not in the middle of a divert
        self.server = server
        self._zone = dns.name.from_text(server.zone)

    def __repr__(self) -> str:
        return f"DnsDriver({self._where()}, zone={self._zone}, key={self.server.key.name})"

    def state(self, service: DnsRecord) -> TrafficState:
        """The record's addresses and TTL and the zone's serial, as the server answers now."""
        name = self._owner(service)
        answer = self._query(name, service.rdtype)
        rrset = answer.get_rrset(answer.answer, name, dns.rdataclass.IN, _rdtype(service))
        addresses = [rdata.to_text() for rdata in rrset] if rrset else []
        return TrafficState.of(
            self._target(service),
            ((address, service.rdtype) for address in addresses),
            ttl=rrset.ttl if rrset else None,
            serial=self._serial(),
        )

    def key_works(self) -> int | None:
        """The zone's serial, asked in a TSIG-signed SOA query: a read, so a readiness check changes nothing.

        The server must know the key and sign its answer with it; an unknown
        key or a wrong secret comes back as :class:`TrafficRefused`.
        """
        query = dns.message.make_query(self._zone, "SOA")
        query.use_tsig(_tsig_key(self.server.key))
        where = f"DNS server {self._where()} (SOA query signed with TSIG key {self.server.key.name})"
        response, _ = self._exchange(
            where, lambda: dns.query.udp_with_fallback(query, self.server.host, self.server.timeout, self.server.port)
        )
        if response.rcode() != dns.rcode.NOERROR or not response.had_tsig:
            raise TrafficRefused(f"{where}: answered {dns.rcode.to_text(response.rcode())}"
                                 f"{'' if response.had_tsig else ', unsigned'}")
        rrset = response.get_rrset(response.answer, self._zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        return rrset[0].serial if rrset else None

    def lower_ttl(self, service: DnsRecord, expected: TrafficState) -> TrafficState:
        """Rewrite the same addresses with ``service.ttl``, ahead of a divert."""
        return self._apply(service, expected, expected.destinations, service.ttl)

    def divert(self, service: DnsRecord, expected: TrafficState) -> TrafficState:
        return self._apply(service, expected, service.mirror, service.ttl)

    def restore(self, service: DnsRecord, expected: TrafficState, wanted: TrafficState) -> TrafficState:
        return self._apply(service, expected, wanted.destinations, wanted.ttl or service.ttl)

    def _apply(
        self, service: DnsRecord, expected: TrafficState, addresses: Iterable[str], ttl: int
    ) -> TrafficState:
        wanted = sorted({rdata.to_text() for rdata in self._rdatas(service, addresses)})
        if not wanted:
            raise TrafficError(f"{self._target(service)}: refusing to leave an empty record")
        current = self.state(service)
        if list(current.destinations) == wanted and current.ttl == ttl:
            return current
        if not current.same_routes(expected):
            raise self._conflict(service, expected, f"it now holds {current.describe()}")
        self._send(service, self._update(service, expected, wanted, ttl))
        return self._verify(service, wanted, ttl, current.serial)

    def _update(
        self, service: DnsRecord, expected: TrafficState, wanted: list[str], ttl: int
    ) -> dns.update.UpdateMessage:
        """Replace the rrset, on condition that it still holds exactly ``expected``."""
        name = self._owner(service)
        update = dns.update.UpdateMessage(self._zone, keyring=_tsig_key(self.server.key))
        if expected.routes:
            update.present(name, *self._rdatas(service, expected.destinations))
        else:
            update.absent(name, service.rdtype)
        update.replace(name, ttl, *self._rdatas(service, wanted))
        return update

    def _send(self, service: DnsRecord, update: dns.update.UpdateMessage) -> None:
        target = self._target(service)
        response = self._exchange(
            target, lambda: dns.query.tcp(update, self.server.host, self.server.timeout, self.server.port)
        )
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
            raise TrafficConflict(
                f"{target}: update not applied, prerequisite failed ({dns.rcode.to_text(rcode)}): "
                "the record no longer holds what the plan saw (changed by hand?); it was left as it is"
            )
        if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
            raise TrafficRefused(
                f"{target}: update refused ({dns.rcode.to_text(rcode)}) for TSIG key "
                f"{self.server.key.name}; nothing was changed"
            )
        raise TrafficError(f"{target}: update failed ({dns.rcode.to_text(rcode)}); nothing was changed")

    def _verify(self, service: DnsRecord, wanted: list[str], ttl: int, old_serial: int | None) -> TrafficState:
        """Poll the authoritative server until it answers ``wanted`` with a newer serial."""
        deadline = time.monotonic() + service.verify_timeout
        while True:
            current = self.state(service)
            if list(current.destinations) == wanted and current.ttl == ttl and _newer(current.serial, old_serial):
                return current
            if time.monotonic() >= deadline:
                raise TrafficUnverified(
                    f"{self._target(service)}: update accepted but after {service.verify_timeout:.1f} s the "
                    f"server answers {current.describe()} ttl {current.ttl} serial {current.serial} "
                    f"(wanted {wanted} ttl {ttl}, serial above {old_serial})"
                )
            time.sleep(POLL_INTERVAL)

    def _query(self, name: dns.name.Name, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        where = f"DNS server {self._where()} (query {name} {rdtype})"
        response, _ = self._exchange(
            where,
            lambda: dns.query.udp_with_fallback(query, self.server.host, self.server.timeout, self.server.port),
        )
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise TrafficRefused(f"{where}: answered {dns.rcode.to_text(response.rcode())}")
        if not response.flags & dns.flags.AA:
            raise TrafficError(f"{where}: answer is not authoritative; is {self._zone} served there?")
        return response

    def _exchange(self, where: str, call: Callable[[], T]) -> T:
        """Run one DNS exchange, turning transport and TSIG failures into clear errors."""
        try:
            return call()
        except dns.exception.Timeout:
            raise TrafficUnreachable(
                f"{where}: no answer within {self.server.timeout:.1f} s (server unreachable?); nothing was changed"
            ) from None
        except OSError as exc:
            raise TrafficUnreachable(f"{where}: {exc.strerror or exc}; nothing was changed") from None
        except dns.tsig.PeerError as exc:
            raise TrafficRefused(
                f"{where}: the server rejected TSIG key {self.server.key.name} "
                f"({type(exc).__name__}: {exc}); nothing was changed"
            ) from None
        except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime) as exc:
            raise TrafficRefused(
                f"{where}: answer failed TSIG verification with key {self.server.key.name} "
                f"({type(exc).__name__}); the update may not have been applied"
            ) from None
        except dns.exception.DNSException as exc:
            raise TrafficError(f"{where}: {type(exc).__name__}: {exc}") from None

    def _serial(self) -> int | None:
        answer = self._query(self._zone, "SOA")
        rrset = answer.get_rrset(answer.answer, self._zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        return rrset[0].serial if rrset else None

    def _owner(self, service: DnsRecord) -> dns.name.Name:
        name = dns.name.from_text(service.name, origin=self._zone)
        if not name.is_subdomain(self._zone):
            raise TrafficError(f"DNS server {self._where()}: record {name} is outside zone {self._zone}")
        return name

    def _rdatas(self, service: DnsRecord, addresses: Iterable[str]) -> list[dns.rdata.Rdata]:
        """Parsed (and so validated and normalised) record data."""
        addresses = list(addresses)
        try:
            return [dns.rdata.from_text(dns.rdataclass.IN, _rdtype(service), a) for a in addresses]
        except dns.exception.SyntaxError as exc:
            raise TrafficError(f"{self._target(service)}: bad address in {addresses}: {exc}") from None

    def _conflict(self, service: DnsRecord, expected: TrafficState, found: str) -> TrafficConflict:
        return TrafficConflict(
            f"{self._target(service)}: record changed since the plan saw {expected.describe()}: "
            f"{found}; not overwritten, nothing was changed"
        )

    def _target(self, service: DnsRecord) -> str:
        return f"DNS {self._owner(service)} {service.rdtype} at {self._where()}"

    def _where(self) -> str:
        return f"{self.server.host}:{self.server.port}"


def _tsig_key(key: TsigKey) -> dns.tsig.Key:
    """Built per update and never kept: dnspython's ``Key`` shows its secret in its repr."""
    try:
        return dns.tsig.Key(key.name, key.secret, key.algorithm)
    except (binascii.Error, ValueError):
        raise TrafficError(f"TSIG key {key.name}: secret is not valid base64") from None
    except dns.exception.DNSException as exc:
        raise TrafficError(f"TSIG key {key.name}: {type(exc).__name__}") from None


def _rdtype(service: DnsRecord) -> dns.rdatatype.RdataType:
    return dns.rdatatype.RdataType.make(service.rdtype)


def _newer(serial: int | None, old: int | None) -> bool:
    """RFC 1982 serial arithmetic: ``serial`` is after ``old``."""
    if serial is None or old is None:
        return False
    return dns.serial.Serial(serial) > dns.serial.Serial(old)
