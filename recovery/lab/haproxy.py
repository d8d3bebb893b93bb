"""The lab's load balancer: HAProxy with backend ``web`` and an admin-level stats socket."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port
from recovery.traffic.base import TrafficError
from recovery.traffic.haproxy import HaproxySocket, runtime_command

HAPROXY = "/usr/sbin/haproxy"
BACKEND = "web"
MIRROR_SERVER = "mirror"

_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend www
    bind {host}:{port}
    default_backend {backend}

backend {backend}
{servers}"""


class LabHaproxy(LabDaemon):
    """``haproxy -db`` with a frontend on 127.0.0.1 and a free port.

    ``servers`` maps server names (``eu-web``, ``us-web``) to ``host:port``.
    A ``mirror`` address adds server ``mirror``, disabled until a divert
    makes it ready.
    """

    name = "haproxy"
    backend = BACKEND

    def __init__(self, servers: Mapping[str, str], mirror: str | None = None) -> None:
        super().__init__()
        self.servers = dict(servers)
        self.mirror = mirror
        self.host = LOOPBACK
        self.port = 0

    def __repr__(self) -> str:
        return f"LabHaproxy({self.url}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def socket(self) -> HaproxySocket:
        assert self.workdir is not None, "haproxy is not started"
        return HaproxySocket(str(self.workdir / "admin.sock"))

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        config = workdir / "haproxy.cfg"
        config.write_text(
            _CONFIG.format(
                socket=workdir / "admin.sock",
                host=self.host,
                port=self.port,
                backend=self.backend,
                servers=self._server_lines(),
            )
        )
        return [HAPROXY, "-db", "-f", str(config)]

    def _server_lines(self) -> str:
        lines = [f"    server {name} {address}\n" for name, address in self.servers.items()]
        if self.mirror:
            lines.append(f"    server {MIRROR_SERVER} {self.mirror} disabled\n")
        return "".join(lines)

    def _ready(self) -> bool:
        try:
            return "Name: HAProxy" in runtime_command(HaproxySocket(self.socket.path, timeout=0.2), "show info")
        except TrafficError:
            return False
