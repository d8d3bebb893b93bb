"""`divert` and `return`: move a service's traffic to the known-good mirror and back.

Both act once per run on every service of the target that has a traffic
block. `divert` journals each system's state before and after, so `return`
puts back what was there, minus destinations that belong to no host of the
service, and minus every host this run has no evidence for: `return` admits a
host only as :mod:`recovery.steps.admission` decides (restored and verified,
or swept clean, or admitted by an operator by name; and healthy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from recovery import secrets
from recovery.config.base import Strict
from recovery.config.inventory import Inventory
from recovery.config.targets import Target, diverted_services, service_hosts
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.steps.admission import Facts, HostDecision, decide
from recovery.steps.http_check import probe
from recovery.steps.sweep import SweepOutputs
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


class NoParams(Strict):
    pass


class DivertParams(Strict):
    notice: str | None = Field(None, description="Security notice text (default: the service's `notice`).")


def _notice_file(inventory: Inventory, name: str) -> Path | None:
    path = inventory.services[name].notice_file
    return Path(path).expanduser() if path else None


class Routing(Strict):
    """One traffic system's routing before and after the step (journal form of TrafficState)."""

    before: dict[str, Any]
    after: dict[str, Any]
    foreign: list[str] = Field(default_factory=list)  # destinations that belong to no host of the service
    kept_out: list[str] = Field(default_factory=list)  # hosts of the service not put back


class TrafficOutputs(StepOutputs):
    channels: dict[str, Routing] = Field(default_factory=dict)  # "service/dns" -> routing


class DivertOutputs(TrafficOutputs):
    """The routing each traffic system had before this run diverted it, and the diverted one."""


class ReturnOutputs(TrafficOutputs):
    """The routing `return` found and the one it put back, and why each host of the service is in or out."""

    hosts: dict[str, HostDecision] = Field(default_factory=dict)


@register
class DivertStep(StepKind):
    kind = "divert"
    scope = "run"
    summary = "point the service's traffic at the known-good mirror (DNS, HAProxy) with a security notice"
    Params = DivertParams
    Outputs = DivertOutputs

    def check(self, ctx: StepContext) -> Check:
        for label, driver, service in self._all(ctx):
            if not _is_diverted(label, driver, service):
                return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> DivertOutputs:
        for name in diverted_services(ctx.inventory, ctx.target):
            if path := _notice_file(ctx.inventory, name):
                notice.publish(path, ctx.params.notice or ctx.inventory.services[name].notice)
                ctx.note(f"{name}: the mirror shows the security notice")
        seen, outputs = self._first_seen(ctx), DivertOutputs()
        for label, driver, service in self._all(ctx):
            now = _read(label, driver, service)
            before = seen.get(label, now)  # a resumed divert keeps the routing the run first saw
            if label not in seen:
                ctx.remember({"label": label, "before": before.as_dict()})  # journaled before anything changes
            after = _act(label, lambda: driver.divert(service, now))
            ctx.note(f"{label}: {before.describe()} -> {after.describe()}")
            outputs.channels[label] = _routing(ctx, label, before, after, service)
        return outputs

    def outputs_when_done(self, ctx: StepContext) -> DivertOutputs:
        """Each system's routing as first seen by this run (journaled before the change) and as it is now."""
        seen = self._first_seen(ctx)
        outputs = DivertOutputs(already_done=True)
        for label, driver, service in self._all(ctx):
            if label not in seen:
                raise StepFailed(f"{label}: diverted, but this run never journaled the routing before it; "
                                 "`return` cannot know what to put back: restore the routing by hand")
            outputs.channels[label] = _routing(ctx, label, seen[label], _read(label, driver, service), service)
        return outputs

    def _first_seen(self, ctx: StepContext) -> dict[str, TrafficState]:
        seen: dict[str, TrafficState] = {}
        for fact in ctx.remembered:
            seen.setdefault(fact["label"], TrafficState.from_dict(fact["before"]))
        return seen

    def _all(self, ctx: StepContext) -> list[Channel]:
        found = [c for s in diverted_services(ctx.inventory, ctx.target) for c in channels(ctx.inventory, s)]
        if not found:
            raise StepFailed(f"no service of '{ctx.target.name}' has a traffic block to divert")
        return found

    def unreached(self, ctx: StepContext) -> str | None:
        return "traffic was never diverted: the service still goes where it went before the run"


@register
class ReturnStep(StepKind):
    kind = "return"
    scope = "run"
    summary = ("put back hosts this run proved clean (restored and verified, or swept clean) and healthy; "
               "every other host and foreign destinations stay out")
    Params = NoParams
    Outputs = ReturnOutputs
    needs = ("divert",)  # the sweep's results are weighed when a sweep ran; without one, no sibling comes back
    repeatable = True  # health is probed afresh; the drivers skip what is already so

    def apply(self, ctx: StepContext) -> ReturnOutputs:
        diverted = ctx.output(DivertOutputs).channels
        outputs = ReturnOutputs(hosts=admissions(ctx))
        kept_out = [h for h, d in outputs.hosts.items() if not d.admitted]
        for name in diverted_services(ctx.inventory, ctx.target):
            for label, driver, service in channels(ctx.inventory, name):
                outputs.channels[label] = self._return(ctx, label, driver, service, diverted, outputs.hosts)
            if path := _notice_file(ctx.inventory, name):
                notice.withdraw(path)
        if kept_out:
            ctx.note(f"kept out of rotation: {', '.join(kept_out)}")
        return outputs

    def _return(self, ctx: StepContext, label: str, driver: Any, service: Any,
                diverted: dict[str, Routing], decisions: dict[str, HostDecision]) -> Routing:
        if label not in diverted:
            raise StepFailed(f"{label}: the divert of this run did not record it")
        before = TrafficState.from_dict(diverted[label].before)
        foreign = diverted[label].foreign
        members = service_hosts(ctx.inventory, label.split("/", 1)[0])
        kept_out = [h for h in members if not decisions[h].admitted]
        wanted = before.without([*_destinations_of(ctx.inventory, kept_out, before), *foreign])
        wanted = _with_admitted(ctx.inventory, wanted, [h for h in members if h not in kept_out], service)
        if not wanted.routes:
            raise StepFailed(f"{label}: no host of the service may return; traffic stays on the mirror: "
                             + "; ".join(f"{h}: {decisions[h].reason} (`{decisions[h].command}`)" for h in kept_out)
                             + (f"; foreign: {', '.join(foreign)}" if foreign else ""))
        now = _read(label, driver, service)
        after = _act(label, lambda: driver.restore(service, now, wanted))
        ctx.note(f"{label}: {now.describe()} -> {after.describe()}"
                 + (f" ({', '.join(kept_out)} kept out)" if kept_out else "")
                 + (f" (foreign {', '.join(foreign)} not restored)" if foreign else ""))
        return Routing(before=now.as_dict(), after=after.as_dict(), foreign=foreign, kept_out=kept_out)

    def unreached(self, ctx: StepContext) -> str | None:
        if "divert" not in ctx.outputs:
            return None
        return "traffic stays on the known-good mirror: the run stopped before `return`, no host was put back"

    def foresee(self, inventory: Inventory, target: Target, before: tuple[str, ...],
                params: Any = None) -> dict[str, str]:
        """Who can come back: what this playbook does before `return` decides it."""
        proves = "verify" in before and ("restore" in before or "diff" in before)
        said = {}
        for name in diverted_services(inventory, target):
            for host in service_hosts(inventory, name):
                if host in target.hosts:
                    said[host] = ("back if restored and verified in this run (or no indicator and verified) and "
                                  "healthy; else stays out" if proves else
                                  f"stays out: this playbook does not restore and verify it (`--admit {host}`)")
                else:
                    said[host] = ("back only if a sweep before this step found it clean and it is healthy; "
                                  f"dirty or unswept stays out (`recover {host}`)" if "sweep" in before else
                                  f"stays out: no sweep in this playbook (`recover {host}`, or `--admit {host}`)")
        return said


def admissions(ctx: StepContext) -> dict[str, HostDecision]:
    """The decision about every host of the diverted services, each said as a note."""
    sweep = ctx.optional_output(SweepOutputs)
    decisions = {}
    for name in diverted_services(ctx.inventory, ctx.target):
        for host in service_hosts(ctx.inventory, name):
            if host in decisions:
                continue
            decisions[host] = decide(Facts(host, ctx.run_id, ctx.step.id, host in ctx.target.hosts,
                                           ctx.history(host), sweep, ctx.admitted.get(host), _health(ctx, host)))
            d = decisions[host]
            ctx.note(f"{host}: admitted: {d.reason}" if d.admitted else
                     f"{host}: stays out: {d.reason}; to recover it: `{d.command}`")
    return decisions


def _health(ctx: StepContext, host: str) -> str | None:
    """The first failing health check of ``host``, or None when all pass."""
    return next((p for c in ctx.inventory.hosts[host].health if (p := probe(c, 5.0))), None)


def _with_admitted(inventory: Inventory, wanted: TrafficState, admitted: list[str], service: Any) -> TrafficState:
    """``wanted`` plus every admitted host, also one that was out of rotation before this run.

    The inventory, not the routing found at divert, says who serves: a host an
    earlier run kept out, restored and proven clean by this one, comes back.
    """
    if isinstance(service, DnsRecord):
        routes = {(inventory.hosts[h].public_address or inventory.hosts[h].address, service.rdtype) for h in admitted}
    else:
        routes = {(h, "ready") for h in admitted}
    present = dict(wanted.routes)
    extra = [(d, c) for d, c in routes if present.get(d) != c]
    return TrafficState.of(wanted.target, [*(r for r in wanted.routes if r[0] not in dict(extra)), *extra],
                           ttl=wanted.ttl, serial=wanted.serial)


def _destinations_of(inventory: Inventory, hosts: list[str], state: TrafficState) -> list[str]:
    """A host appears in DNS by its address and in HAProxy by its name."""
    names = set(hosts)
    addresses = {inventory.hosts[h].public_address or inventory.hosts[h].address for h in hosts}
    return [d for d in state.destinations if d in names or d in addresses]


def _routing(ctx: StepContext, label: str, before: TrafficState, after: TrafficState, service: Any) -> Routing:
    """One system's divert, with any destination the inventory does not know reported as an indicator."""
    foreign = _foreign(ctx.inventory, label, before, service)
    if foreign:
        ctx.note(f"{label}: INDICATOR: traffic went to {', '.join(foreign)}, which is no host of the "
                 "service (hijacked?); `return` will not send traffic there")
    return Routing(before=before.as_dict(), after=after.as_dict(), foreign=foreign)


def _foreign(inventory: Inventory, label: str, before: TrafficState, service: Any) -> list[str]:
    """Destinations of ``before`` that are neither a host of the service (by address or name) nor the mirror."""
    hosts = service_hosts(inventory, label.split("/", 1)[0])
    known = set(hosts) | {inventory.hosts[h].public_address or inventory.hosts[h].address for h in hosts}
    known |= set(service.mirror)
    return [d for d in before.destinations if d not in known]


def _is_diverted(label: str, driver: Any, service: Any) -> bool:
    now = _read(label, driver, service)
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
