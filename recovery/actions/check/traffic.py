"""Can the run move the service's traffic: the DNS server takes the TSIG key, the HAProxy socket answers?

Both are read-only: a signed SOA query and a read of the record, never an
update; ``show servers state``, never ``set server``.
"""

from __future__ import annotations

from recovery.actions.check.model import Item, failed, passed
from recovery.actions.check.reach import secrets_item
from recovery.config.inventory import Inventory
from recovery.secrets import SecretError
from recovery.steps.traffic import channels
from recovery.traffic.base import TrafficError
from recovery.traffic.dns import DnsDriver
from recovery.traffic.haproxy import HaproxyDriver


def service_items(inventory: Inventory, name: str) -> list[Item]:
    """The service's secrets, then one item per traffic system it has."""
    traffic = inventory.services[name].traffic
    refs = {f"services.{name}.traffic.dns.tsig_secret": traffic.dns.tsig_secret} if traffic.dns else {}
    items = [secrets_item(refs)]
    try:
        systems = list(channels(inventory, name))
    except (SecretError, TrafficError) as exc:
        return [*items, failed("dns", str(exc), "fix the TSIG key reference and its value (base64)")]
    for label, driver, service in systems:
        items.append(_dns(driver, service) if isinstance(driver, DnsDriver) else _haproxy(driver, service))
    return items


def _dns(driver: DnsDriver, record: object) -> Item:
    try:
        serial = driver.key_works()
        state = driver.state(record)  # type: ignore[arg-type]
    except TrafficError as exc:
        return failed("dns", str(exc), "make the server's key (name, algorithm, secret) match the inventory's, "
                                       "and allow it updates of the zone")
    return passed("dns", f"TSIG key {driver.server.key.name} accepted (serial {serial}); {state.describe()}")


def _haproxy(driver: HaproxyDriver, backend: object) -> Item:
    try:
        state = driver.state(backend)  # type: ignore[arg-type]
    except TrafficError as exc:
        return failed("haproxy", str(exc), "declare `stats socket PATH level admin` in haproxy.cfg and point "
                                           "traffic.haproxy.socket at it; the backend and servers must exist")
    return passed("haproxy", state.describe())
