"""The lab's authoritative DNS server: BIND9 serving ``lab.test`` with TSIG-signed dynamic updates."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Sequence

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port
from recovery.secrets import REDACTOR

NAMED = "/usr/sbin/named"

_CONFIG = """\
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port {port} {{ {host}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
    allow-transfer {{ none; }};
}};
controls {{ }};
key "{key_name}" {{
    algorithm {algorithm};
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{workdir}/{zone}.zone";
    allow-update {{ key "{key_name}"; }};
}};
"""

_ZONE_HEAD = """\
$ORIGIN {zone}.
$TTL {ttl}
@   IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@   IN NS  ns.{zone}.
ns  IN A   {host}
"""


class LabDns(LabDaemon):
    """``named -g`` on 127.0.0.1 and a free port, authoritative for ``lab.test``.

    ``www`` holds one A record per web server address. Updates are allowed
    only when signed with the lab's TSIG key, whose secret is fresh per start
    and registered with the redactor like any real secret.
    """

    name = "named"
    zone = "lab.test"
    record = "www"
    key_name = "recovery-lab-key"
    algorithm = "hmac-sha256"

    def __init__(self, web_addresses: Sequence[str], ttl: int = 300) -> None:
        super().__init__()
        self.web_addresses = tuple(web_addresses)
        self.ttl = ttl
        self.host = LOOPBACK
        self.port = 0
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        REDACTOR.add(self.secret)

    def __repr__(self) -> str:
        return f"LabDns({self.host}:{self.port}, zone={self.zone}, pid={self.pid})"

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        (workdir / f"{self.zone}.zone").write_text(self._zone_text())
        config = workdir / "named.conf"
        config.write_text(
            _CONFIG.format(
                workdir=workdir,
                port=self.port,
                host=self.host,
                key_name=self.key_name,
                algorithm=self.algorithm,
                secret=self.secret,
                zone=self.zone,
            )
        )
        config.chmod(0o600)
        return [NAMED, "-g", "-c", str(config)]

    def _zone_text(self) -> str:
        head = _ZONE_HEAD.format(zone=self.zone, ttl=self.ttl, host=self.host)
        return head + "".join(f"{self.record} IN A {address}\n" for address in self.web_addresses)

    def _ready(self) -> bool:
        query = dns.message.make_query(f"{self.zone}.", dns.rdatatype.SOA)
        try:
            answer = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
        except (dns.exception.DNSException, OSError):
            return False
        return bool(answer.answer)
