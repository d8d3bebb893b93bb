"""Faults injected into whole runs against real daemons: each ends journaled, reported and explained.

Every case runs the `recover` CLI as an operator would and checks the same
four things: no traceback reaches the terminal, the journal holds the failure
and the run's end (and verifies), the report is written and names the cause,
and the other hosts or the traffic are left in a safe, stated place.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from recovery.engine.journal import Journal
from recovery.lab.bind import LabDns
from recovery.lab.ipmi_bmc import LabIpmiBmc
from recovery.traffic.haproxy import parse_servers_state, runtime_command
from tests.integration.conftest import WEB_ADDRESSES
from tests.integration.test_contain import TINY_VM
from tests.integration.test_divert_return import ADMIT_BOTH, addresses, write_project
from tests.support.project import recover, write_inventory

pytestmark = pytest.mark.integration

HIJACKER = "198.51.100.66"  # an address of no host of the inventory


def journal_of(runs: Path) -> Journal:
    (run_dir,) = list(runs.iterdir())
    return Journal(run_dir / "journal.sqlite")


def assert_explained(result: subprocess.CompletedProcess[str], runs: Path, *expected: str) -> str:
    """No traceback; the run finished in the journal, which verifies; the report names each cause."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    journal = journal_of(runs)
    events = [r.event for r in journal.records()]
    assert events[-1] == "run_finished", events
    assert journal.verify() == []
    report = (journal.path.parent / "report.md").read_text()
    for text in expected:
        assert text in report, (text, report)
    return report


def states(tmp_path: Path) -> dict[tuple[str, str], str]:
    status = json.loads(recover("status", "--runs-dir", "runs", "--json", cwd=tmp_path).stdout)
    return {(s["step"], s["host"]): s["state"] for s in status["steps"]}


# -- traffic: DNS and HAProxy ------------------------------------------------------------------

def traffic_project(tmp_path: Path, lab_dns, lab_haproxy, web_sites, ops, between: str) -> None:
    """The www service plus an `ops` host whose `run` step injects the fault between divert and return."""
    write_project(tmp_path, lab_dns, lab_haproxy, web_sites, lab_dns.secret)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(inventory.read_text() + "\n" + ops.inventory_host()
                         + '\n[groups]\nall = ["eu-web", "us-web", "ops"]\n')
    (tmp_path / "pb.toml").write_text(f"""
[[steps]]
kind = "divert"
on_failure = "stop"
[[steps]]
kind = "run"
name = "fault"
targets = ["ops"]
params = {{ command = "{between}" }}
[[steps]]
kind = "return"
on_failure = "continue"
""")


def run_all(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return recover("all", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                   "--yes", *ADMIT_BOTH, *extra, cwd=tmp_path, timeout=180)


def test_dns_server_down_at_divert_stops_before_any_change(tmp_path, lab_dns, lab_haproxy, web_sites,
                                                           sshd_factory):
    traffic_project(tmp_path, lab_dns, lab_haproxy, web_sites, sshd_factory("ops"), "true")
    lab_dns.stop()
    result = run_all(tmp_path, "--accept-check", "dns")  # the run meets the fault, as if it came after the check
    assert result.returncode == 4, result.stdout + result.stderr
    report = assert_explained(result, tmp_path / "runs", "www/dns")
    assert states(tmp_path)[("divert", "*")] == "failed"
    assert "Nothing failed" not in report
    assert "mirror" in runtime_command(lab_haproxy.socket, "show servers state web")  # HAProxy alive


def test_dns_server_down_at_return_keeps_traffic_on_the_mirror(tmp_path, lab_dns, lab_haproxy, web_sites,
                                                               sshd_factory):
    traffic_project(tmp_path, lab_dns, lab_haproxy, web_sites, sshd_factory("ops"), "kill PID")
    (tmp_path / "pb.toml").write_text((tmp_path / "pb.toml").read_text().replace("PID", str(lab_dns.pid)))
    result = run_all(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "www/dns")
    assert states(tmp_path)[("return", "*")] == "failed"
    rows = {r.server: r.admin_state for r in parse_servers_state(runtime_command(lab_haproxy.socket,
                                                                             "show servers state web"))}
    assert rows["eu-web"] != "ready" and rows["us-web"] != "ready"  # HAProxy still on the mirror, as reported


def test_haproxy_socket_gone_at_return_is_a_failed_return(tmp_path, lab_dns, lab_haproxy, web_sites,
                                                          sshd_factory):
    traffic_project(tmp_path, lab_dns, lab_haproxy, web_sites, sshd_factory("ops"), "kill PID")
    (tmp_path / "pb.toml").write_text((tmp_path / "pb.toml").read_text().replace("PID", str(lab_haproxy.pid)))
    result = run_all(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "www/haproxy")
    assert states(tmp_path)[("return", "*")] == "failed"


def test_a_hijacked_record_is_reported_and_never_restored(tmp_path, lab_haproxy, web_sites, sshd_factory):
    """The intruder pointed the record at an address of no inventory host: return must not put it back."""
    with LabDns((WEB_ADDRESSES[0], HIJACKER)) as hijacked:
        traffic_project(tmp_path, hijacked, lab_haproxy, web_sites, sshd_factory("ops"), "true")
        result = run_all(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{HIJACKER}, which is no host of the service" in " ".join(result.stdout.split())
        assert addresses(hijacked) == set(WEB_ADDRESSES)  # the inventory's admitted hosts, never the hijacker's
    assert_explained(result, tmp_path / "runs", HIJACKER)


# -- out-of-band: BMC unreachable and refusing, and the empty block after them --------------------

def test_bmc_unreachable_and_refusing_fail_their_hosts_and_the_run_still_ends(tmp_path, sshd_factory):
    h1, h2 = sshd_factory("h1"), sshd_factory("h2")
    with LabIpmiBmc(TINY_VM, "admin", "right-Password-1") as bmc:
        dead = free_udp_port()
        write_inventory(tmp_path / "inventory.toml", [h1, h2])
        text = (tmp_path / "inventory.toml").read_text()
        for name, port in (("h1", dead), ("h2", bmc.port)):
            text = text.replace(f"[hosts.{name}.ssh]", f'[hosts.{name}.oob]\ndriver = "ipmi"\naddress = "127.0.0.1"\n'
                                f'port = {port}\nusername = "admin"\npassword = "env:BMC_PASSWORD"\n'
                                f"[hosts.{name}.ssh]")
        (tmp_path / "inventory.toml").write_text(text)
        (tmp_path / "pb.toml").write_text("""
[[steps]]
kind = "contain"
serial = 10
timeout = 20
[[steps]]
kind = "run"
name = "after"
params = { command = "echo never" }
""")
        result = recover("web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                         "--yes", "--accept-check", "bmc", cwd=tmp_path, env={"BMC_PASSWORD": "wrong-Password-2"},
                         timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "h1:", "h2:")
    found = states(tmp_path)
    assert found[("contain", "h1")] == found[("contain", "h2")] == "failed"
    assert found[("after", "h1")] == found[("after", "h2")] == "pending"  # the empty block after them is fine


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SSH: a connection dropped mid-step, a host that is no SSH server --------------------------------

def test_ssh_dropping_mid_step_fails_that_host_only(tmp_path, sshd_factory):
    hosts = [sshd_factory(n) for n in ("h1", "h2", "h3")]
    write_inventory(tmp_path / "inventory.toml", hosts)
    (tmp_path / "pb.toml").write_text(f"""
[order]
serial = 3
[[steps]]
kind = "run"
name = "work"
params = {{ command = "case $SSH_CONNECTION in *' {hosts[1].port}') kill -9 $PPID;; esac; sleep 0.5; echo done" }}
[[steps]]
kind = "run"
name = "after"
params = {{ command = "echo after" }}
""")
    result = recover("web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                     "--yes", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "h2: the SSH connection was lost while the command ran")
    found = states(tmp_path)
    assert found[("work", "h2")] == "failed" and found[("after", "h2")] == "pending"
    assert found[("after", "h1")] == found[("after", "h3")] == "done"


def test_a_port_that_drops_the_ssh_banner_fails_quietly_into_the_run_log(tmp_path, sshd_factory):
    """paramiko's transport thread logs "Error reading SSH protocol banner" with a traceback; not on our terminal."""
    good = sshd_factory("h1")
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        write_inventory(tmp_path / "inventory.toml", [good])
        text = (tmp_path / "inventory.toml").read_text().replace(f"port = {good.port}", f"port = {mute.getsockname()[1]}")
        (tmp_path / "inventory.toml").write_text(text)
        (tmp_path / "pb.toml").write_text('[[steps]]\nkind = "run"\nparams = { command = "true" }\n')
        closer = _accept_and_close(mute)
        result = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                         "--yes", "--accept-check", "ssh", cwd=tmp_path, timeout=120)
        closer.join(5)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "protocol banner" not in result.stderr and "Exception (client)" not in result.stderr
    assert_explained(result, tmp_path / "runs", "h1:")


def _accept_and_close(listener: socket.socket):
    import threading

    def serve() -> None:
        listener.settimeout(30)
        try:
            connection, _ = listener.accept()
            connection.close()
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


# -- the run directory's disk full, the golden store missing ------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs for the runs directory: a real disk that really fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_stops_the_run_at_once_and_says_so(tmp_path, sshd_factory, small_disk):
    host = sshd_factory("h1")
    write_inventory(tmp_path / "inventory.toml", [host])
    filler = small_disk / "filler"
    (tmp_path / "pb.toml").write_text(f"""
[[steps]]
kind = "run"
name = "fill-the-disk"
params = {{ command = "dd if=/dev/zero of={filler} bs=64k 2>/dev/null; sync; true" }}
""" + "".join(f'[[steps]]\nkind = "run"\nname = "s{i}"\nparams = {{ command = "echo {i}" }}\n' for i in range(5)))
    result = recover("h1", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir",
                     str(small_disk / "runs"), "--yes", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 7, output
    assert "Traceback" not in output
    assert "cannot write the journal" in output and "recover resume" in output
    filler.unlink()
    journal = journal_of(small_disk / "runs")
    assert journal.verify() == []
    assert "s4" not in {r.step for r in journal.records()}  # nothing ran that the journal could not record


def test_golden_store_missing_fails_verify_with_the_way_out(tmp_path, sshd_factory):
    hosts = [sshd_factory(n) for n in ("h1", "h2")]
    write_inventory(tmp_path / "inventory.toml", hosts)
    (tmp_path / "pb.toml").write_text(f"""
[order]
serial = 2
[[steps]]
kind = "verify"
params = {{ store = "{tmp_path / 'no-such-store'}" }}
""")
    result = recover("web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                     "--yes", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "recover golden")


def test_a_run_stopped_after_divert_says_traffic_stays_on_the_mirror(tmp_path, lab_dns, lab_haproxy, web_sites,
                                                                     sshd_factory):
    traffic_project(tmp_path, lab_dns, lab_haproxy, web_sites, sshd_factory("ops"), "exit 3")
    playbook = tmp_path / "pb.toml"
    playbook.write_text(playbook.read_text().replace('name = "fault"', 'name = "fault"\non_failure = "stop"'))
    result = run_all(tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert_explained(result, tmp_path / "runs", "traffic stays on the known-good mirror")
    assert addresses(lab_dns) == {"203.0.113.7"}  # still the mirror, as the report says
