"""`divert` and `return` steps through `recover`, against real BIND9 and HAProxy on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import pytest

from recovery.engine.journal import Journal
from recovery.lab.mirror import NOTICE_FILE
from tests.integration.conftest import WEB_ADDRESSES
from tests.support.project import recover

pytestmark = pytest.mark.integration

PLAYBOOK = """
[[steps]]
kind = "divert"
on_failure = "stop"
[[steps]]
kind = "http_check"
name = "mirror-answers"
params = { url = "HAPROXY_URL", status = 503, contains = "Security notice" }
[[steps]]
kind = "return"
"""


def write_project(tmp_path: Path, lab_dns, lab_haproxy, web_sites, secret: str) -> None:
    (tmp_path / "tsig.key").write_text(secret)
    hosts = ""
    for name, address in zip(("eu-web", "us-web"), WEB_ADDRESSES):
        hosts += f"""
[hosts.{name}]
address = "{address}"
[hosts.{name}.ssh]
key = "/nonexistent"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK"
[[hosts.{name}.health]]
url = "{web_sites[name].url}"
contains = "served by {name}"
"""
    (tmp_path / "inventory.toml").write_text(hosts + f"""
[services.www]
hosts = ["eu-web", "us-web"]
notice = "Restoring after a security incident <b>soon</b>"
notice_file = "{web_sites['mirror'].workdir / NOTICE_FILE}"
[services.www.traffic.dns]
server = "127.0.0.1"
port = {lab_dns.port}
zone = "{lab_dns.zone}"
record = "{lab_dns.record}"
tsig_name = "{lab_dns.key_name}"
tsig_secret = "file:{tmp_path / 'tsig.key'}"
mirror_address = "203.0.113.7"
[services.www.traffic.haproxy]
socket = "{lab_haproxy.socket.path}"
backend = "web"
servers = ["eu-web", "us-web"]
mirror_server = "mirror"
""")
    (tmp_path / "pb.toml").write_text(PLAYBOOK.replace("HAPROXY_URL", lab_haproxy.url))


def addresses(lab_dns) -> set[str]:
    query = dns.message.make_query(f"{lab_dns.record}.{lab_dns.zone}.", "A")
    answer = dns.query.udp(query, "127.0.0.1", port=lab_dns.port, timeout=2)
    return {r.to_text() for rrset in answer.answer for r in rrset}


def served(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def run(tmp_path: Path) -> object:
    return recover("www", "--inventory", "inventory.toml", "--playbook", "pb.toml",
                   "--runs-dir", "runs", "--yes", cwd=tmp_path)


def divert_outputs(tmp_path: Path) -> dict:
    (db,) = (tmp_path / "runs").glob("*/journal.sqlite")
    records = Journal(db).records()
    return next(r.data["outputs"]["channels"] for r in records if r.event == "step_succeeded" and r.step == "divert")


def test_divert_serves_the_mirror_then_return_restores(tmp_path, lab_dns, lab_haproxy, web_sites):
    secret = lab_dns.secret
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, secret)
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    diverted = divert_outputs(tmp_path)
    assert [r[0] for r in diverted["www/dns"]["after"]["routes"]] == ["203.0.113.7"]
    assert sorted(r[0] for r in diverted["www/dns"]["before"]["routes"]) == sorted(WEB_ADDRESSES)
    assert addresses(lab_dns) == set(WEB_ADDRESSES)  # returned
    pages = {served(lab_haproxy.url) for _ in range(6)}
    assert pages == {"served by eu-web\n", "served by us-web\n"}
    assert not (web_sites["mirror"].workdir / NOTICE_FILE).exists()  # withdrawn on return
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr


def test_unhealthy_host_stays_out_on_return(tmp_path, lab_dns, lab_haproxy, web_sites):
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    web_sites["us-web"].stop()
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert addresses(lab_dns) == {WEB_ADDRESSES[0]}
    assert {served(lab_haproxy.url) for _ in range(4)} == {"served by eu-web\n"}
    assert "us-web kept out" in " ".join(result.stdout.split())


def test_refused_update_stops_the_run_and_changes_nothing(tmp_path, lab_dns, lab_haproxy, web_sites):
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIGtleQ==")
    result = run(tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "www/dns" in result.stdout
    assert addresses(lab_dns) == set(WEB_ADDRESSES)
    status = json.loads(recover("status", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    states = {s["step"]: s["state"] for s in status["steps"]}
    assert states == {"divert": "failed", "mirror-answers": "pending", "return": "pending"}
