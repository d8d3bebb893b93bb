"""What every traffic driver offers: read the routing of a service, divert it, restore it.

A driver changes routing only from a state the caller has seen (``expected``)
to a state it names, so a change made by someone else in between is reported
instead of overwritten, and the journal's before/after states make ``resume``
and ``undo`` exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol, TypeVar

from recovery.errors import AdapterError
from recovery.secrets import REDACTOR


class TrafficError(AdapterError):
    """A traffic change failed; the message names the server and the record or backend.

    Messages pass through the redactor, so a secret that slipped into one is masked.
    """

    def __init__(self, message: str) -> None:
        super().__init__(REDACTOR.text(message))


class TrafficUnreachable(TrafficError):
    """The traffic system did not answer; nothing was changed."""

    transient = True


class TrafficRefused(TrafficError):
    """The traffic system refused the change (authentication, permission, unknown name)."""


class TrafficConflict(TrafficError):
    """The routing is no longer what the plan saw; it was left as it is."""


class TrafficUnverified(TrafficError):
    """The change was accepted but the system did not show the new routing in time."""

    transient = True


@dataclass(frozen=True)
class TrafficState:
    """Where one service's traffic goes, as read from the traffic system.

    ``routes`` are sorted ``(destination, condition)`` pairs: for DNS an
    address and its record type, for HAProxy a server name and its admin
    state (``ready``, ``drain``, ``maint``). ``ttl`` and ``serial`` are the
    DNS record's TTL and zone serial, ``None`` elsewhere.
    """

    target: str
    routes: tuple[tuple[str, str], ...]
    ttl: int | None = None
    serial: int | None = None

    @classmethod
    def of(cls, target: str, routes: Iterable[tuple[str, str]], **extra: Any) -> TrafficState:
        return cls(target, tuple(sorted(routes)), **extra)

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(destination for destination, _ in self.routes)

    def same_routes(self, other: TrafficState) -> bool:
        return self.routes == other.routes

    def without(self, destinations: Iterable[str]) -> TrafficState:
        """This state minus some destinations: what to restore when those hosts failed their checks."""
        dropped = set(destinations)
        return TrafficState.of(
            self.target,
            (route for route in self.routes if route[0] not in dropped),
            ttl=self.ttl,
            serial=self.serial,
        )

    def describe(self) -> str:
        routes = ", ".join(f"{destination} {condition}" for destination, condition in self.routes)
        return f"[{routes or 'nothing'}]"

    def as_dict(self) -> dict[str, Any]:
        """The journal form (JSON-safe)."""
        return {
            "target": self.target,
            "routes": [list(route) for route in self.routes],
            "ttl": self.ttl,
            "serial": self.serial,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficState:
        return cls.of(
            str(data["target"]),
            ((str(d), str(c)) for d, c in data["routes"]),
            ttl=data.get("ttl"),
            serial=data.get("serial"),
        )


ServiceT = TypeVar("ServiceT", contravariant=True)


class TrafficDriver(Protocol[ServiceT]):
    """One kind of traffic system; ``service`` is the driver's own parameter dataclass.

    Every method is idempotent: when the routing already is what is asked
    for, nothing is sent and the current state is returned.
    """

    def state(self, service: ServiceT) -> TrafficState:
        """Read the routing now."""
        ...

    def divert(self, service: ServiceT, expected: TrafficState) -> TrafficState:
        """Send traffic to the known-good mirror if the routing is still ``expected``; return the new state."""
        ...

    def restore(self, service: ServiceT, expected: TrafficState, wanted: TrafficState) -> TrafficState:
        """Go from ``expected`` (usually the diverted state) to ``wanted`` (usually the state before divert)."""
        ...
