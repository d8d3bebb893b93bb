"""The check `recover TARGET` runs before it creates the run: can it reach what its plan touches?

Only the items a run needs to reach its hosts and services are run (secrets,
SSH, BMC, DNS, HAProxy), and only for what the plan touches: a missing SSH
key file must stop the run before traffic is diverted, not after. The seed
lessons, the RPO and the golden image are readiness before an incident; on a
host that is already compromised their findings are evidence, and recovery
is the remedy, so they do not hold a run back (`recover check` shows them).

A FAIL refuses the run unless the operator accepts that item by name
(``--accept-check ITEM``; the accepted names are journaled with the start).
"""

from __future__ import annotations

from recovery.actions.check.model import Report
from recovery.actions.check.run import Scope, check
from recovery.config.inventory import Inventory
from recovery.engine.plan import Plan

PREFLIGHT_ITEMS = ("secrets", "ssh", "bmc", "dns", "haproxy")
#: Step kinds that reach no host (the traffic steps reach services, checked separately).
NO_HOST = {"approval", "message", "http_check", "divert", "return"}
#: Step kinds that reach a host only through its BMC (and its console).
BMC_ONLY = {"contain", "boot_single"}
TRAFFIC = {"divert", "return"}


def scope(inventory: Inventory, plan: Plan) -> Scope:
    """Per host, what the plan's steps reach it through; the services whose traffic it moves."""
    per_host: dict[str, set[str]] = {}
    for step in plan.steps:
        if step.step.kind in NO_HOST:
            continue
        needs = "bmc" if step.step.kind in BMC_ONLY else "ssh"
        for host in step.hosts if step.scope == "host" else plan.target.hosts:
            per_host.setdefault(host, {"secrets"}).add(needs)
    for host, items in per_host.items():  # a host without a BMC block: the plan's own checks speak for it
        if inventory.hosts[host].oob is None:
            items.discard("bmc")
    moves_traffic = any(step.step.kind in TRAFFIC for step in plan.steps)
    return Scope(tuple(h for h in plan.target.hosts if h in per_host),
                 plan.target.services if moves_traffic else (), items=PREFLIGHT_ITEMS, per_host=per_host)


def preflight(inventory: Inventory, plan: Plan) -> Report:
    return check(inventory, plan.target.name, scope(inventory, plan))


def refused(report: Report, accepted: tuple[str, ...]) -> list[str]:
    """``subject:item`` FAILs the operator did not accept (an accepted name is ``item`` or ``subject:item``)."""
    return [name for name in report.failures() if name not in accepted and name.split(":", 1)[1] not in accepted]
