"""The inventory: hosts, groups and services, and how to reach and judge each host."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from recovery.config.base import Name, SecretRef, Strict


class Ssh(Strict):
    """How the orchestrator logs in. The host key is pinned: an unknown or changed key is refused."""

    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key: str = Field(description="Path of the private key file (the key itself never goes here).")
    host_key: str | None = Field(
        None, description="Pinned host key as 'TYPE BASE64' (e.g. 'ssh-ed25519 AAAA...')."
    )
    known_hosts: str | None = Field(None, description="Path of a known_hosts file holding the pin.")
    gateway: Name | None = Field(None, description="Name of an inventory host to jump through.")

    @model_validator(mode="after")
    def _one_pin(self) -> "Ssh":
        if (self.host_key is None) == (self.known_hosts is None):
            raise ValueError("set exactly one of 'host_key' or 'known_hosts' (host keys are pinned)")
        if self.host_key is not None and len(self.host_key.split()) != 2:
            raise ValueError("host_key must be 'TYPE BASE64', e.g. 'ssh-ed25519 AAAAC3Nz...'")
        return self


class LabOob(Strict):
    """The lab BMC: an SSH endpoint with a command-restricted key, like an iDRAC/iLO CLI."""

    driver: Literal["lab"]
    address: str = "127.0.0.1"
    machine: Name
    ssh: Ssh
    rescue: bool = Field(False, description="The lab BMC boots this machine from the lab's rescue image "
                                            "(its sha256 checked before each boot).")


class IpmiOob(Strict):
    driver: Literal["ipmi"]
    address: str
    port: int = Field(623, ge=1, le=65535)
    username: str
    password: SecretRef
    rescue: Literal["cdrom", "network"] | None = Field(
        None, description="Where a rescue boot starts: a rescue disc in the host's drive, or the network's "
                          "rescue image (PXE). Unset: no rescue medium, single-user mode is used.")


class RedfishOob(Strict):
    driver: Literal["redfish"]
    url: str
    system: str
    username: str
    password: SecretRef
    verify_tls: bool = True
    rescue_image: str | None = Field(
        None, description="URL of a known-good rescue ISO the BMC inserts as virtual media for a rescue boot. "
                          "Unset: no rescue medium, single-user mode is used.")


class LibvirtOob(Strict):
    """A virtual machine's hypervisor: power, the next boot's kernel command line, the serial console."""

    driver: Literal["libvirt"]
    uri: str = Field(description="libvirt connection URI, e.g. 'qemu:///system' or "
                                 "'qemu:///system?socket=/run/lab/libvirt-sock'.")
    domain: str = Field(min_length=1, description="The domain's name on that connection.")


Oob = Annotated[LabOob | IpmiOob | RedfishOob | LibvirtOob, Field(discriminator="driver")]


def offers_rescue(oob: LabOob | IpmiOob | RedfishOob | LibvirtOob | None) -> bool:
    """Whether the host's BMC can boot it from a known-good rescue medium."""
    if isinstance(oob, LabOob):
        return oob.rescue
    if isinstance(oob, IpmiOob):
        return oob.rescue is not None
    return isinstance(oob, RedfishOob) and oob.rescue_image is not None


class HealthCheck(Strict):
    """An HTTP probe: the host is healthy when the URL answers ``status`` with ``contains`` in the body."""

    url: str
    status: int = Field(200, ge=100, le=599)
    contains: str = ""


_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """Seconds of a duration written '90s', '30m', '2h' or '1d' (one number, one unit: no guessing)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a duration: write a whole number and one unit, e.g. '30m', '2h', '1d'")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _check_duration(value: str) -> str:
    duration_seconds(value)
    return value


#: A duration such as '2h' (s, m, h or d).
Duration = Annotated[str, AfterValidator(_check_duration)]

#: Item names of `recover check` (recovery.actions.check) a host may waive.
CheckItemName = Literal["bmc", "ssh", "console", "golden", "snapshots", "snapshot-schedule", "atime", "secrets",
                        "rescue-image", "cgi", "automation-keys", "logs", "root-login"]


class Readiness(Strict):
    """What `recover check` holds the host to, beyond being reachable."""

    rpo: Duration | None = Field(
        None, description="Recovery point objective: the newest snapshot of every protected dataset must be "
                          "younger than this ('2h'); unset, the age is shown but not judged.")
    snapshot_jobs: list[str] = Field(
        default_factory=lambda: ["auto-snapshot", "sanoid", "zrepl"], min_length=1,
        description="A cron line or systemd unit naming one of these is the host's snapshot schedule.")
    automation_accounts: list[str] = Field(
        default_factory=list, description="Accounts used by scripts (backup, deploy): every authorized_keys "
                                          "entry must carry from= and command= (the 2009 lesson).")
    cgi_dirs: list[str] = Field(
        default_factory=list, description="The only directories where Apache may run CGI (ExecCGI, "
                                          "cgi-script handler, ScriptAlias): the 2005/2009 lesson.")
    waive: dict[CheckItemName, str] = Field(
        default_factory=dict, description="Items whose FAIL is a known, accepted gap on this host: "
                                          "item -> why (shown as WARN with the reason).")

    @model_validator(mode="after")
    def _reasons(self) -> "Readiness":
        for item, why in self.waive.items():
            if not why.strip():
                raise ValueError(f"waive.{item}: say why the gap is accepted")
        return self


class Host(Strict):
    address: str
    public_address: str | None = Field(
        None, description="The address the service's DNS record names for this host (default: address).")
    role: Literal["web", "staging", "mirror", "other"] = "other"
    ssh: Ssh
    oob: Oob | None = None
    datasets: list[str] = Field(default_factory=list, description="Protected ZFS datasets.")
    health: list[HealthCheck] = Field(default_factory=list)
    root_password: SecretRef | None = Field(None, description="For sulogin on the console.")
    check: Readiness = Field(default_factory=Readiness, description="What `recover check` expects of the host.")


class Dns(Strict):
    server: str
    port: int = Field(53, ge=1, le=65535)
    zone: str
    record: str
    tsig_name: str
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha512", "hmac-sha1"] = "hmac-sha256"
    tsig_secret: SecretRef
    ttl: int = Field(60, ge=1)
    mirror_address: str


class Haproxy(Strict):
    socket: str
    backend: str
    servers: list[str]
    mirror_server: str | None = None


class Traffic(Strict):
    dns: Dns | None = None
    haproxy: Haproxy | None = None


class Service(Strict):
    hosts: list[Name]
    mirror: Name | None = None
    notice: str = ""
    notice_file: str | None = Field(
        None, description="File the mirror serves as its security notice while diverted (divert writes it).")
    traffic: Traffic = Field(default_factory=Traffic)


class SyslogCollector(Strict):
    """A syslog server that receives every journal record (RFC 5424 over TCP, octet-counted) as it is written."""

    address: str
    port: int = Field(514, ge=1, le=65535)
    tls: bool = Field(False, description="Wrap the connection in TLS (the server's certificate is verified).")
    ca_file: str | None = Field(None, description="CA bundle for the server's certificate (default: the system's).")

    @model_validator(mode="after")
    def _ca_needs_tls(self) -> "SyslogCollector":
        if self.ca_file is not None and not self.tls:
            raise ValueError("'ca_file' is only used with 'tls = true'")
        return self


#: What a webhook can be told about; each is one kind of journal record.
WebhookEvent = Literal["run_started", "needs_operator", "host_failed", "run_finished"]


class WebhookCollector(Strict):
    """An HTTP(S) endpoint told about a run as JSON, signed with HMAC-SHA256 (``X-Recovery-Signature``)."""

    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL the notifications are POSTed to.")
    secret: SecretRef = Field(description="Key of the HMAC-SHA256 signature of each body (a reference).")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: ["run_started", "needs_operator", "host_failed", "run_finished"],
        min_length=1, description="Which notifications this endpoint gets (default: all).")


class Collectors(Strict):
    """Where a run's journal and notifications go off the machine while the run happens."""

    syslog: list[SyslogCollector] = Field(default_factory=list)
    webhook: list[WebhookCollector] = Field(default_factory=list)


class Inventory(Strict):
    hosts: dict[Name, Host]
    groups: dict[Name, list[Name]] = Field(default_factory=dict)
    services: dict[Name, Service] = Field(default_factory=dict)
    collectors: Collectors = Field(default_factory=Collectors)
