"""The system ssh's command line for bulk streams: the pin only, nothing of the operator's setup."""

from __future__ import annotations

from recovery.transport.openssh import known_hosts_line, ssh_command, usable_for
from recovery.transport.ssh import SshTarget

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6x"


def target(**overrides: object) -> SshTarget:
    fields: dict[str, object] = {"name": "eu-web", "address": "192.0.2.10", "port": 2222, "user": "root",
                                 "key_file": "/keys/eu-web", "host_keys": (KEY,)}
    fields.update(overrides)
    return SshTarget(**fields)  # type: ignore[arg-type]


def test_known_hosts_names_the_port_off_22() -> None:
    assert known_hosts_line("192.0.2.10", 2222, KEY + " root@eu-web") == f"[192.0.2.10]:2222 {KEY}\n"
    assert known_hosts_line("192.0.2.10", 22, KEY) == f"192.0.2.10 {KEY}\n"


def test_ssh_reads_no_config_agent_or_known_hosts_but_the_pin() -> None:
    argv = ssh_command(target(), "/tmp/k/known_hosts", "zfs send -c 'tank/www@golden'")
    options = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o")
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    assert options["StrictHostKeyChecking"] == "yes" and options["UserKnownHostsFile"] == "/tmp/k/known_hosts"
    assert options["GlobalKnownHostsFile"] == "/dev/null" and options["HostKeyAlgorithms"] == "ssh-ed25519"
    assert options["BatchMode"] == "yes" and options["IdentitiesOnly"] == "yes"
    assert options["IdentityAgent"] == "none" and options["ControlPath"] == "none"
    assert {"-x", "-a", "-T"} <= set(argv) and argv[argv.index("-i") + 1] == "/keys/eu-web"
    # the remote command is one argument after the host: nothing of it is parsed here
    assert argv[-3:] == ["--", "192.0.2.10", "zfs send -c 'tank/www@golden'"]


def test_a_pinned_rsa_key_is_asked_for_with_sha2_signatures() -> None:
    """OpenSSH refuses ``ssh-rsa`` (SHA-1) signatures by default: naming it would fail every RSA host."""
    argv = ssh_command(target(host_keys=(KEY, "ssh-rsa AAAAB3NzaC1yc2E")), "/k", "true")
    assert "HostKeyAlgorithms=ssh-ed25519,rsa-sha2-512,rsa-sha2-256" in argv


def test_a_target_behind_a_gateway_is_left_to_paramiko() -> None:
    assert not usable_for(target(gateway=target(name="jump")))
