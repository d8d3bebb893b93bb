"""`recover check` and the preflight of `recover TARGET` against real sshd, BIND9 and HAProxy on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from recovery.actions.check import reach
from recovery.config.inventory import Inventory
from recovery.engine.access import Channel, HostAccess
from recovery.engine.journal import Journal
from tests.integration.test_divert_return import addresses, write_project
from tests.support.project import recover
from tests.support.pty_shell import KeptOpen, PtyShell
from tests.support.sshd import keygen

pytestmark = pytest.mark.integration

#: divert first, then a step that needs SSH on each host: the order in which a late failure hurts.
DIVERT_THEN_SSH = """
[[steps]]
kind = "divert"
on_failure = "stop"
[[steps]]
kind = "run"
params = { command = "true" }
"""


def check(tmp_path: Path, target: str, inventory: str = "inventory.toml") -> tuple[int, dict[str, dict]]:
    result = recover("check", target, "--inventory", inventory, "--json", cwd=tmp_path)
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    return result.returncode, {f"{s['name']}:{i['name']}": i for s in report["subjects"] for i in s["items"]}


def ssh_inventory(tmp_path: Path, daemon, key: str, host_key: str) -> None:
    (tmp_path / "inventory.toml").write_text(f"""
[hosts.web1]
address = "127.0.0.1"
datasets = []
[hosts.web1.ssh]
port = {daemon.port}
key = "{key}"
host_key = "{host_key}"
""")


def test_a_missing_ssh_key_file_fails_naming_the_file(tmp_path, sshd_factory) -> None:
    daemon = sshd_factory("web1")
    ssh_inventory(tmp_path, daemon, str(tmp_path / "gone_ed25519"), daemon.host_key)
    code, items = check(tmp_path, "web1")
    assert code == 1 and items["web1:ssh"]["status"] == "FAIL"
    assert f"SSH key file {tmp_path / 'gone_ed25519'} does not exist" in items["web1:ssh"]["detail"]
    assert items["web1:cgi"]["status"] == "WARN" and "not checked" in items["web1:cgi"]["detail"]


def test_a_reachable_host_with_its_pinned_key_passes_ssh_and_is_read(tmp_path, sshd_factory) -> None:
    daemon = sshd_factory("web1")
    ssh_inventory(tmp_path, daemon, str(daemon.client_key), daemon.host_key)
    _, items = check(tmp_path, "web1")
    assert items["web1:ssh"]["status"] == "PASS", items["web1:ssh"]
    assert items["web1:root-login"]["status"] in ("PASS", "FAIL")  # judged from this machine's own sshd files
    assert "not checked" not in items["web1:root-login"]["detail"]


def test_a_changed_host_key_fails_as_a_possible_impersonation(tmp_path, sshd_factory) -> None:
    daemon = sshd_factory("web1")
    other = keygen(tmp_path / "other_host_key")
    ssh_inventory(tmp_path, daemon, str(daemon.client_key), other)
    code, items = check(tmp_path, "web1")
    assert code == 1 and items["web1:ssh"]["status"] == "FAIL"
    assert "host key" in items["web1:ssh"]["detail"] and "impersonation" in items["web1:ssh"]["fix"]


def test_dns_and_haproxy_pass_when_the_key_and_socket_are_right(tmp_path, lab_dns, lab_haproxy, web_sites) -> None:
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    _, items = check(tmp_path, "www")
    assert items["www:dns"]["status"] == "PASS" and f"TSIG key {lab_dns.key_name} accepted" in items["www:dns"]["detail"]
    assert items["www:haproxy"]["status"] == "PASS" and items["www:secrets"]["status"] == "PASS"


def test_a_wrong_tsig_key_fails_dns_and_changes_nothing(tmp_path, lab_dns, lab_haproxy, web_sites) -> None:
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, "d3JvbmcgYnV0IHZhbGlkIGJhc2U2NA==")
    before = addresses(lab_dns)
    code, items = check(tmp_path, "www")
    assert code == 1 and items["www:dns"]["status"] == "FAIL"
    assert "TSIG" in items["www:dns"]["detail"] and items["www:haproxy"]["status"] == "PASS"
    assert addresses(lab_dns) == before


def test_a_missing_haproxy_socket_fails(tmp_path, lab_dns, lab_haproxy, web_sites) -> None:
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(inventory.read_text().replace(lab_haproxy.socket.path, str(tmp_path / "no.sock")))
    code, items = check(tmp_path, "www")
    assert code == 1 and items["www:haproxy"]["status"] == "FAIL"
    assert str(tmp_path / "no.sock") in items["www:haproxy"]["detail"] and "stats socket" in items["www:haproxy"]["fix"]


def test_recover_refuses_before_divert_when_an_ssh_key_file_is_missing(tmp_path, lab_dns, lab_haproxy,
                                                                       web_sites) -> None:
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    (tmp_path / "pb.toml").write_text(DIVERT_THEN_SSH)
    before = addresses(lab_dns)
    result = recover("eu-web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                     "--yes", cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "preflight check failed: eu-web:ssh — SSH key file /nonexistent does not exist" in result.stderr
    assert "--accept-check ITEM for each: ssh" in result.stderr
    assert addresses(lab_dns) == before and not (tmp_path / "runs").exists()


def test_an_accepted_failure_starts_the_run_and_is_journaled(tmp_path, lab_dns, lab_haproxy, web_sites) -> None:
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    (tmp_path / "pb.toml").write_text(DIVERT_THEN_SSH)
    result = recover("eu-web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                     "--yes", "--accept-check", "ssh", cwd=tmp_path)
    assert "preflight FAIL accepted by --accept-check: eu-web:ssh" in result.stderr
    (db,) = (tmp_path / "runs").glob("*/journal.sqlite")
    started = next(r for r in Journal(db).records() if r.event == "run_started")
    assert started.data["checks"]["accepted"] == ["eu-web:ssh"]


class _ShellBmc:
    """A BMC whose console is one interactive shell on a pty; each session's stream leaves the shell running."""

    def __init__(self, shell: PtyShell) -> None:
        self.shell = shell

    def console(self) -> KeptOpen:
        return KeptOpen(self.shell)


def test_the_deep_console_check_logs_in_runs_and_logs_out(tmp_path) -> None:
    inventory = Inventory.model_validate({"hosts": {"web1": {
        "address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK"}}}})
    shell = PtyShell()
    try:
        access = HostAccess("web1", inventory, None, Channel.SSH, lambda: _ShellBmc(shell))  # type: ignore[arg-type]
        item = reach.console(access)
        assert item.status.value == "PASS", item
        deadline = time.monotonic() + 10
        with pytest.raises(EOFError):  # the shell was told `exit`: nothing is left logged in on the line
            while time.monotonic() < deadline:
                shell.read(0.2)
    finally:
        shell.close()


def test_the_deep_console_check_leaves_a_single_user_shell_alone(tmp_path) -> None:
    inventory = Inventory.model_validate({"hosts": {"web1": {
        "address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK"}}}})
    shell = PtyShell()
    try:
        fake = tmp_path / "bin" / "systemctl"  # what systemd answers under rescue.target
        fake.parent.mkdir()
        fake.write_text("#!/bin/sh\necho maintenance\n")
        fake.chmod(0o755)
        shell.write(f"export PATH={fake.parent}:$PATH\n".encode())
        access = HostAccess("web1", inventory, None, Channel.SSH, lambda: _ShellBmc(shell))  # type: ignore[arg-type]
        item = reach.console(access)
        assert item.status.value == "PASS" and "single-user mode" in item.detail, item
        shell.write(b"echo still-here\n")
        seen, deadline = b"", time.monotonic() + 10
        while b"still-here\r\n" not in seen and time.monotonic() < deadline:
            seen += shell.read(0.2)
        assert b"still-here\r\n" in seen
    finally:
        shell.close()
