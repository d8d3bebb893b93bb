"""The out-of-band driver of a host, built from its inventory `oob` block (secrets resolved late)."""

from __future__ import annotations

from urllib.parse import urlsplit

from recovery import secrets
from recovery.config.inventory import IpmiOob, RedfishOob
from recovery.engine.registry import StepContext, StepFailed
from recovery.engine.sessions import ssh_pins
from recovery.oob.base import OobDriver
from recovery.oob.ipmi import IpmiDriver
from recovery.oob.ipmi_endpoint import IpmiEndpoint
from recovery.oob.lab import LabBmcEndpoint, LabDriver
from recovery.oob.redfish import RedfishDriver, RedfishEndpoint


def oob_driver(ctx: StepContext) -> OobDriver:
    name = str(ctx.host)
    oob = ctx.inventory.hosts[name].oob
    if oob is None:
        raise StepFailed(f"{name}: no out-of-band block in the inventory (hosts.{name}.oob)")
    where = f"hosts.{name}.oob.password"
    if isinstance(oob, IpmiOob):
        return IpmiDriver(IpmiEndpoint(host=name, address=oob.address, port=oob.port,
                                       username=oob.username, password=secrets.resolve(oob.password, where)))
    if isinstance(oob, RedfishOob):
        url = urlsplit(oob.url)
        return RedfishDriver(RedfishEndpoint(
            host=name, address=url.hostname or "", port=url.port or (443 if url.scheme == "https" else 80),
            scheme=url.scheme, username=oob.username, password=secrets.resolve(oob.password, where),
            verify=oob.verify_tls, system_id=oob.system))
    pins = ssh_pins(oob.ssh, oob.address)
    return LabDriver(LabBmcEndpoint(host=name, address=oob.address, port=oob.ssh.port, username=oob.ssh.user,
                                    key_file=oob.ssh.key, host_key=pins[0], machine=oob.machine))
