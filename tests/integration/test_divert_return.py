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
from recovery.traffic.haproxy import parse_servers_state, runtime_command
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


#: These playbooks restore nothing, so no host has this run's evidence: the operator admits them by name.
ADMIT_BOTH = ("--admit", "eu-web", "--admit", "us-web", "--why", "the fixture's sites serve known files")


def run(tmp_path: Path, target: str = "www", admit: tuple[str, ...] = ADMIT_BOTH, accept: tuple[str, ...] = ()) -> object:
    """``accept``: preflight items to accept, so the run itself meets the fault (as when it arises after the check)."""
    accepted = [arg for item in accept for arg in ("--accept-check", item)]
    return recover(target, "--inventory", "inventory.toml", "--playbook", "pb.toml",
                   "--runs-dir", "runs", "--yes", *admit, *accepted, cwd=tmp_path)


def journal(tmp_path: Path) -> Journal:
    (db,) = (tmp_path / "runs").glob("*/journal.sqlite")
    return Journal(db)


def report(tmp_path: Path) -> str:
    (path,) = (tmp_path / "runs").glob("*/report.md")
    return " ".join(path.read_text().split())


def divert_outputs(tmp_path: Path) -> dict:
    records = journal(tmp_path).records()
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
    result = run(tmp_path, accept=("dns",))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "www/dns" in result.stdout
    assert addresses(lab_dns) == set(WEB_ADDRESSES)
    status = json.loads(recover("status", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    states = {s["step"]: s["state"] for s in status["steps"]}
    assert states == {"divert": "failed", "mirror-answers": "pending", "return": "pending"}


def test_admissions_by_name_are_journaled_with_who_and_why(tmp_path, lab_dns, lab_haproxy, web_sites):
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    admitted = {r.host: r.data for r in journal(tmp_path).records() if r.event == "host_admitted"}
    assert set(admitted) == {"eu-web", "us-web"}
    assert all(d["why"] == "the fixture's sites serve known files" and d["operator"] for d in admitted.values())
    text = report(tmp_path)
    assert "us-web admitted into rotation by" in text
    assert "admitted by" in text and "against the run's evidence: this run did not restore and verify it" in text


def test_without_evidence_or_admission_no_host_returns(tmp_path, lab_dns, lab_haproxy, web_sites):
    """`--yes` confirms the run, it admits nobody: traffic stays on the mirror, every host named with a command."""
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    result = run(tmp_path, admit=())
    assert result.returncode == 4, result.stdout + result.stderr  # a failed `return` (on_failure: stop)
    assert addresses(lab_dns) == {"203.0.113.7"}
    rows = {r.server: r.admin_state for r in parse_servers_state(runtime_command(lab_haproxy.socket,
                                                                             "show servers state web"))}
    assert rows["mirror"] == "ready" and rows["eu-web"] != "ready" and rows["us-web"] != "ready"
    shown = " ".join(result.stdout.split())
    for host in ("eu-web", "us-web"):
        assert f"{host}: stays out: this run did not restore and verify it; to recover it: `recover {host}`" in shown
    assert "no host of the service may return; traffic stays on the mirror" in report(tmp_path)


SWEEP_PLAYBOOK = PLAYBOOK.replace('[[steps]]\nkind = "return"', '[[steps]]\nkind = "sweep"\non_failure = "continue"\n'
                                  '[[steps]]\nkind = "return"')


def test_a_sibling_that_cannot_be_swept_stays_out_and_is_named(tmp_path, lab_dns, lab_haproxy, web_sites):
    """Target eu-web: us-web left rotation with it; with no golden manifest it cannot be swept, so it stays out."""
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    (tmp_path / "pb.toml").write_text(SWEEP_PLAYBOOK.replace("HAPROXY_URL", lab_haproxy.url))
    result = run(tmp_path, "eu-web", ("--admit", "eu-web", "--why", "rebuilt from the image this morning"),
                 accept=("ssh",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert addresses(lab_dns) == {WEB_ADDRESSES[0]}
    assert {served(lab_haproxy.url) for _ in range(4)} == {"served by eu-web\n"}
    (sweep,) = [r.data["outputs"] for r in journal(tmp_path).records()
                if r.event == "step_succeeded" and r.step == "sweep"]
    assert sweep["hosts"]["us-web"]["verdict"] == "unsweepable"
    assert "no golden manifest" in sweep["hosts"]["us-web"]["reason"]
    text = report(tmp_path)
    assert "| us-web | **KEPT OUT** | could not be swept: us-web: no golden manifest" in text
    assert "recover us-web |" in text
    assert "A sweep runs the host's own tools on its running system, which a rootkit can deceive" in text
    assert "us-web | not a target; kept out: could not be swept" in text


def test_an_operator_may_admit_an_unswept_sibling_by_name(tmp_path, lab_dns, lab_haproxy, web_sites):
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    (tmp_path / "pb.toml").write_text(SWEEP_PLAYBOOK.replace("HAPROXY_URL", lab_haproxy.url))
    result = run(tmp_path, "eu-web", accept=("ssh",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert addresses(lab_dns) == set(WEB_ADDRESSES)
    assert "against the run's evidence: could not be swept" in report(tmp_path)
