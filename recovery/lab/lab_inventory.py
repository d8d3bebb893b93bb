"""The lab inventory: the repository's ``inventory.toml`` with the running lab's real values.

The repository's inventory describes the lab fleet with placeholder ports and
paths. ``recover lab up`` writes this one into the lab's run directory: the
guests' forwarded ports and pinned host keys, the operator key, health checks
on the forwarded HTTP ports, and the lab services' DNS port, TSIG secret file,
HAProxy socket. The known-good mirror is a web server without SSH, so it is
not an inventory host; its URL is in lab.json. Out-of-band blocks name the
lab BMC, or libvirt for the Vagrant fleet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from recovery.lab.fleet_setup import FLEET, STAGING, WEB_HOSTS, FleetHost
from recovery.lab.ports import LOOPBACK

#: What every page of the lab site says; the health checks look for it.
SITE_MARK = "Lab web host"
NOTICE = "We are restoring this site after a security incident. Service will return shortly."
SERVICE = "www"


@dataclass(frozen=True)
class GuestFacts:
    ssh_port: int
    http_port: int
    host_key: str
    public_address: str | None = None  # what the service's DNS record names for this host
    address: str = LOOPBACK  # where SSH and HTTP answer (a forwarded loopback port, or the guest itself)


@dataclass(frozen=True)
class OobFacts:
    """The lab BMC every guest sits behind (reached over SSH with a command-restricted key)."""

    port: int
    user: str
    key: str
    host_key: str


@dataclass(frozen=True)
class LibvirtFacts:
    """The hypervisor every guest runs on (a Vagrant fleet): its URI and each host's domain name."""

    uri: str
    domains: dict[str, str]


@dataclass(frozen=True)
class ServiceFacts:
    dns_port: int
    zone: str
    record: str
    tsig_name: str
    tsig_algorithm: str
    tsig_secret_file: str
    mirror_address: str
    haproxy_socket: str
    haproxy_backend: str
    mirror_server: str
    notice_file: str | None = None


def inventory_text(
    guests: dict[str, GuestFacts], services: ServiceFacts, operator_key: str, root_password_files: dict[str, str],
    oob: OobFacts | LibvirtFacts,
) -> str:
    """TOML text of the lab inventory (validated by the caller with ``load_inventory``)."""
    header = (
        "# Written by `recover lab up` for the running lab; rewritten at every `up`.\n"
        "# Secrets are references; host keys are pinned.\n"
    )
    parts = [header]
    for host in FLEET:
        parts.append(_host(host, guests[host.name], operator_key, root_password_files[host.name]))
        parts.append(_oob(host, oob))
    parts.append(_groups())
    parts.append(_service(services))
    return "\n".join(parts)


def _q(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value)


def _host(host: FleetHost, facts: GuestFacts, operator_key: str, root_password_file: str) -> str:
    key_type, key_b64 = facts.host_key.split()[:2]
    public = f"public_address = {_q(facts.public_address)}\n" if facts.public_address else ""
    text = f"""[hosts.{host.name}]
address = {_q(facts.address)}
{public}role = {_q(host.role)}
datasets = {json.dumps(list(host.datasets))}
root_password = {_q("file:" + root_password_file)}

[hosts.{host.name}.ssh]
port = {facts.ssh_port}
user = "root"
key = {_q(operator_key)}
host_key = {_q(f"{key_type} {key_b64}")}
"""
    if host.role == "web":
        text += _web_check(host) + f"""
[[hosts.{host.name}.health]]
url = {_q(f"http://{facts.address}:{facts.http_port}/")}
status = 200
contains = {_q(SITE_MARK)}
"""
    return text


def _web_check(host: FleetHost) -> str:
    """What `recover check` holds a lab web server to, and the two gaps the lab accepts, with the reason."""
    return f"""
[hosts.{host.name}.check]
rpo = "1d"
automation_accounts = ["root"]  # root holds the staging host's deploy key (www-sync pushes as root)
cgi_dirs = ["/srv/www/cgi-bin", "/usr/lib/cgi-bin"]

[hosts.{host.name}.check.waive]
logs = "the lab image has no syslog daemon; recovery's own journal goes to the inventory's collectors"
snapshot-schedule = "the lab runs auto-snapshot itself at fixed points, so its cron line is commented out"
"""


def _oob(host: FleetHost, oob: OobFacts | LibvirtFacts) -> str:
    if isinstance(oob, LibvirtFacts):
        return f"""[hosts.{host.name}.oob]
driver = "libvirt"
uri = {_q(oob.uri)}
domain = {_q(oob.domains[host.name])}
"""
    return f"""[hosts.{host.name}.oob]
driver = "lab"
machine = {_q(host.name)}
rescue = true

[hosts.{host.name}.oob.ssh]
port = {oob.port}
user = {_q(oob.user)}
key = {_q(oob.key)}
host_key = {_q(" ".join(oob.host_key.split()[:2]))}
"""


def _groups() -> str:
    return f"""[groups]
web = {json.dumps([h.name for h in WEB_HOSTS])}
fleet = ["web", {_q(STAGING.name)}]
"""


def _service(s: ServiceFacts) -> str:
    return f"""[services.{SERVICE}]
hosts = ["web"]
notice = {_q(NOTICE)}
{f"notice_file = {_q(s.notice_file)}" if s.notice_file else ""}

[services.{SERVICE}.traffic.dns]
server = {_q(LOOPBACK)}
port = {s.dns_port}
zone = {_q(s.zone)}
record = {_q(s.record)}
tsig_name = {_q(s.tsig_name)}
tsig_algorithm = {_q(s.tsig_algorithm)}
tsig_secret = {_q("file:" + s.tsig_secret_file)}
mirror_address = {_q(s.mirror_address)}

[services.{SERVICE}.traffic.haproxy]
socket = {_q(s.haproxy_socket)}
backend = {_q(s.haproxy_backend)}
servers = {json.dumps([h.name for h in WEB_HOSTS])}
mirror_server = {_q(s.mirror_server)}
"""
