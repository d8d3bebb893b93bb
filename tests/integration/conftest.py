"""Real lab servers on 127.0.0.1 for the traffic tests; each fixture stops what it started, even on failure."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from recovery.lab.bind import NAMED, LabDns
from recovery.lab.haproxy import HAPROXY, LabHaproxy
from recovery.lab.mirror import Mirror

WEB_ADDRESSES = ("192.0.2.10", "192.0.2.11")


def _require(program: str, package: str) -> None:
    """A missing server fails the test: a skipped traffic test would hide an untested driver."""
    if not shutil.which(program):
        pytest.fail(f"{program} is not installed (apt-get install {package})")


@pytest.fixture
def lab_dns() -> Iterator[LabDns]:
    _require(NAMED, "bind9")
    with LabDns(WEB_ADDRESSES) as server:
        yield server


def _site(root: Path, name: str, text: str) -> Path:
    site = root / name
    site.mkdir()
    (site / "index.html").write_text(text)
    return site


@pytest.fixture
def web_sites(tmp_path: Path) -> Iterator[dict[str, Mirror]]:
    """Two tiny web servers standing in for eu-web and us-web, and the known-good mirror."""
    sites = {
        "eu-web": Mirror(_site(tmp_path, "eu", "served by eu-web\n")),
        "us-web": Mirror(_site(tmp_path, "us", "served by us-web\n")),
        "mirror": Mirror(_site(tmp_path, "mirror", "known-good copy\n")),
    }
    try:
        for server in sites.values():
            server.start()
        yield sites
    finally:
        for server in sites.values():
            server.stop()


@pytest.fixture
def lab_haproxy(web_sites: dict[str, Mirror]) -> Iterator[LabHaproxy]:
    _require(HAPROXY, "haproxy")
    servers = {name: f"{site.host}:{site.port}" for name, site in web_sites.items() if name != "mirror"}
    mirror = web_sites["mirror"]
    with LabHaproxy(servers, mirror=f"{mirror.host}:{mirror.port}") as balancer:
        yield balancer
