"""`divert` and `return`: move a service's traffic to the known-good mirror and back.

Both act once per run on every service of the target that has a traffic
block. `divert` journals each system's state before and after, so `return`
puts back exactly what was there, minus hosts whose health checks fail now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from recovery import secrets
from recovery.config.base import Strict
from recovery.config.inventory import Inventory, Service
from recovery.config.targets import expand
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, register
from recovery.steps.http_check import probe
from recovery.traffic import notice
from recovery.traffic.base import TrafficError, TrafficState
from recovery.traffic.dns import DnsDriver, DnsRecord, DnsServer, TsigKey
from recovery.traffic.haproxy import HaproxyBackend, HaproxyDriver, HaproxySocket

Channel = tuple[str, Any, Any]  # (label, driver, the driver's service parameters)


def channels(inventory: Inventory, name: str) -> Iterator[Channel]:
    """The traffic systems of one service, as drivers with their parameters."""
    traffic = inventory.services[name].traffic
    if traffic.dns:
        d = traffic.dns
        key = TsigKey(d.tsig_name, d.tsig_algorithm,
                      secrets.resolve(d.tsig_secret, f"services.{name}.traffic.dns.tsig_secret"))
        server = DnsServer(d.server, d.port, d.zone, key)
        yield f"{name}/dns", DnsDriver(server), DnsRecord(d.record, (d.mirror_address,), ttl=d.ttl)
    if traffic.haproxy:
        h = traffic.haproxy
        mirror = (h.mirror_server,) if h.mirror_server else ()
        backend = HaproxyBackend(h.backend, tuple(h.servers), mirror)
        yield (f"{name}/haproxy", HaproxyDriver(HaproxySocket(str(Path(h.socket).expanduser()))),
               backend)


def _services(ctx: StepContext) -> list[str]:
    return [s for s in ctx.target.services
            if ctx.inventory.services[s].traffic.dns or ctx.inventory.services[s].traffic.haproxy]


class NoParams(Strict):
    pass


class DivertParams(Strict):
    notice: str | None = Field(None, description="Security notice text (default: the service's `notice`).")


def _notice_file(inventory: Inventory, name: str) -> Path | None:
    path = inventory.services[name].notice_file
    return Path(path).expanduser() if path else None


@register
class DivertStep(StepKind):
    kind = "divert"
    scope = "run"
    summary = "point the service's traffic at the known-good mirror (DNS, HAProxy) with a security notice"
    Params = DivertParams

    def check(self, ctx: StepContext) -> Check:
        for _, driver, service in self._all(ctx):
            if not _is_diverted(driver, service):
                return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for name in _services(ctx):
            if path := _notice_file(ctx.inventory, name):
                notice.publish(path, ctx.params.notice or ctx.inventory.services[name].notice)
                ctx.note(f"{name}: the mirror shows the security notice")
        for label, driver, service in self._all(ctx):
            before = _read(label, driver, service)
            after = _act(label, lambda: driver.divert(service, before))
            outputs[label] = {"before": before.as_dict(), "after": after.as_dict()}
            ctx.note(f"{label}: {before.describe()} -> {after.describe()}")
        return outputs

    def _all(self, ctx: StepContext) -> list[Channel]:
        found = [c for s in _services(ctx) for c in channels(ctx.inventory, s)]
        if not found:
            raise StepFailed(f"no service of '{ctx.target.name}' has a traffic block to divert")
        return found


@register
class ReturnStep(StepKind):
    kind = "return"
    scope = "run"
    summary = "put healthy hosts back into rotation; failed hosts stay out"
    Params = NoParams
    repeatable = True  # health is probed afresh; the drivers skip what is already so

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        diverted = ctx.outputs.get("divert")
        if not diverted:
            raise StepFailed("no journaled divert in this run: nothing to return")
        outputs: dict[str, Any] = {}
        for name in _services(ctx):
            unhealthy = _unhealthy_hosts(ctx, ctx.inventory.services[name])
            for label, driver, service in channels(ctx.inventory, name):
                outputs[label] = self._return(ctx, label, driver, service, diverted, unhealthy)
            if path := _notice_file(ctx.inventory, name):
                notice.withdraw(path)
        return outputs

    def _return(self, ctx: StepContext, label: str, driver: Any, service: Any,
                diverted: dict[str, Any], unhealthy: list[str]) -> dict[str, Any]:
        if label not in diverted:
            raise StepFailed(f"{label}: the divert of this run did not record it")
        before = TrafficState.from_dict(diverted[label]["before"])
        drop = _destinations_of(ctx.inventory, unhealthy, before)
        wanted = before.without(drop)
        if not wanted.routes:
            raise StepFailed(f"{label}: no healthy host ({', '.join(unhealthy)} failed their checks); "
                             "traffic stays on the mirror")
        now = _read(label, driver, service)
        after = _act(label, lambda: driver.restore(service, now, wanted))
        ctx.note(f"{label}: {now.describe()} -> {after.describe()}"
                 + (f" ({', '.join(unhealthy)} kept out)" if unhealthy else ""))
        return {"before": now.as_dict(), "after": after.as_dict(), "kept_out": unhealthy}


def _unhealthy_hosts(ctx: StepContext, service: Service) -> list[str]:
    hosts = [h for m in service.hosts for h in expand(ctx.inventory, m)]
    bad = []
    for host in hosts:
        problems = [p for c in ctx.inventory.hosts[host].health if (p := probe(c, 5.0))]
        if problems:
            bad.append(host)
            ctx.note(f"{host}: unhealthy, stays out: {problems[0]}")
    return bad


def _destinations_of(inventory: Inventory, hosts: list[str], state: TrafficState) -> list[str]:
    """A host appears in DNS by its address and in HAProxy by its name."""
    names = set(hosts)
    addresses = {inventory.hosts[h].public_address or inventory.hosts[h].address for h in hosts}
    return [d for d in state.destinations if d in names or d in addresses]


def _is_diverted(driver: Any, service: Any) -> bool:
    now = driver.state(service)
    if isinstance(service, DnsRecord):
        return set(now.destinations) == set(service.mirror)
    return all(c == "ready" if d in service.mirror else c != "ready" for d, c in now.routes)


def _read(label: str, driver: Any, service: Any) -> TrafficState:
    return _act(label, lambda: driver.state(service))


def _act(label: str, call: Any) -> TrafficState:
    try:
        return call()
    except TrafficError as exc:
        raise StepFailed(f"{label}: {exc}") from None
