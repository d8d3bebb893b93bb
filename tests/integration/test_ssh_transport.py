"""The SSH transport against real sshd: bytes in, bytes out, keys pinned."""

from __future__ import annotations

import subprocess

import pytest

from recovery.transport import openssh
from recovery.transport.files import CopyTooLarge
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused, LoginRefused, SshSession, SshTarget
from tests.support.sshd import keygen, start_sshd

pytestmark = pytest.mark.integration


def target(d, **overrides) -> SshTarget:
    fields = dict(name=d.name, address="127.0.0.1", port=d.port, user="root",
                  key_file=str(d.client_key), host_keys=(d.host_key,))
    fields.update(overrides)
    return SshTarget(**fields)


def test_run_keeps_bytes_and_exit_code(sshd_factory):
    d = sshd_factory("a")
    with SshSession(target(d)) as s:
        result = s.run(r"printf 'caf\351\n\033[2Jboom'; echo err >&2; exit 3", timeout=10)
    assert result.stdout == b"caf\xe9\n\x1b[2Jboom"
    assert result.stderr == b"err\n"
    assert result.exit_code == 3 and not result.ok
    assert result.duration > 0


def test_output_is_capped(sshd_factory):
    d = sshd_factory("a")
    with SshSession(target(d), output_cap=1000) as s:
        result = s.run("head -c 100000 /dev/zero", timeout=10)
    assert len(result.stdout) == 1000 and result.truncated
    assert result.exit_code == 0


def test_timeout_is_an_error(sshd_factory):
    d = sshd_factory("a")
    with SshSession(target(d)) as s:
        with pytest.raises(TransportError, match="did not finish within its timeout"):
            s.run("sleep 5", timeout=0.5)


def test_changed_host_key_is_refused(sshd_factory, tmp_path):
    d = sshd_factory("a")
    other = keygen(tmp_path / "other_host_key")
    with pytest.raises(HostKeyRefused, match="host key CHANGED") as info:
        SshSession(target(d, host_keys=(other,))).open()
    assert "SHA256:" in str(info.value)


def test_unpinned_host_is_refused(sshd_factory):
    d = sshd_factory("a")
    with pytest.raises(HostKeyRefused, match="no key pinned"):
        SshSession(target(d, host_keys=())).open()


def test_put_and_get(sshd_factory, tmp_path):
    d = sshd_factory("a")
    local = tmp_path / "payload"
    local.write_bytes(b"\x00\xffdata")
    with SshSession(target(d)) as s:
        s.put(str(local), str(tmp_path / "remote-copy"))
        assert s.get(str(tmp_path / "remote-copy"), str(tmp_path / "back"), max_bytes=6) == 6
    assert (tmp_path / "back").read_bytes() == b"\x00\xffdata"


def test_get_takes_neither_the_hosts_mode_nor_more_than_agreed(sshd_factory, tmp_path):
    d = sshd_factory("a")
    remote = tmp_path / "hostile"
    remote.write_bytes(b"x" * 5000)
    remote.chmod(0o6777)  # what a hostile SFTP server may report for the evidence file
    with SshSession(target(d)) as s:
        assert s.get(str(remote), str(tmp_path / "copy"), max_bytes=5000) == 5000
        with pytest.raises(CopyTooLarge, match="larger than the 4999 bytes expected"):
            s.get(str(remote), str(tmp_path / "short"), max_bytes=4999)
    assert (tmp_path / "copy").stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "short").stat().st_size <= 4999


def test_jump_through_gateway_with_pinned_keys(sshd_factory):
    bastion, inner = sshd_factory("bastion"), sshd_factory("inner")
    with SshSession(target(inner, gateway=target(bastion))) as s:
        assert s.run("echo through", timeout=10).stdout == b"through\n"


def test_gateway_with_wrong_key_is_refused(sshd_factory, tmp_path):
    bastion, inner = sshd_factory("bastion"), sshd_factory("inner")
    wrong = target(bastion, host_keys=(keygen(tmp_path / "x"),))
    with pytest.raises(HostKeyRefused):
        SshSession(target(inner, gateway=wrong)).open()


@pytest.mark.parametrize("large", [False, True], ids=["session channel", "system ssh"])
def test_fetch_streams_a_command_into_a_private_file_within_its_bound(sshd_factory, tmp_path, large):
    """What `zfs send` of a boot environment goes through: straight into a file here, never on the host;
    the same whichever way it takes."""
    d = sshd_factory("a")
    with SshSession(target(d)) as s:
        size = s.fetch("head -c 3000000 /dev/zero; printf end", str(tmp_path / "stream"), 3_000_003, large=large)
        assert size == 3_000_003 and (tmp_path / "stream").read_bytes().endswith(b"\0end")
        assert (tmp_path / "stream").stat().st_mode & 0o777 == 0o600
        with pytest.raises(CopyTooLarge, match="larger than the 1000 bytes expected"):
            s.fetch("head -c 100000 /dev/zero", str(tmp_path / "too-big"), 1000, large=large)
        with pytest.raises(TransportError, match=r"exit 2: .*no such dataset"):
            s.fetch("echo 'no such dataset' >&2; exit 2", str(tmp_path / "failed"), 1000, large=large)
        with pytest.raises(TransportError, match="broke off"):
            s.fetch("sleep 5", str(tmp_path / "stalled"), 1000, timeout=0.5, large=large)
    assert openssh.usable_for(target(d))  # so the large ones went through the system's ssh


def test_the_system_ssh_trusts_only_the_pinned_key_and_the_inventorys_login(sshd_factory, tmp_path):
    """The bulk copy's own ``ssh`` checks the pin too: another key is refused, never learnt."""
    d = sshd_factory("a")
    other = keygen(tmp_path / "other_host_key")
    with pytest.raises(HostKeyRefused, match="host key refused"):
        openssh.fetch(target(d, host_keys=(other,)), "echo secret", str(tmp_path / "refused"), 1000, 10)
    assert (tmp_path / "refused").read_bytes() == b""
    keygen(tmp_path / "stranger")
    with pytest.raises(LoginRefused, match="login as root refused"):
        openssh.fetch(target(d, key_file=str(tmp_path / "stranger")), "true", str(tmp_path / "x"), 1000, 10)
    assert openssh.fetch(target(d), "printf ok", str(tmp_path / "ok"), 1000, 10) == 2


def test_the_system_ssh_takes_a_pinned_rsa_host_key(tmp_path, client_key):
    """An RSA key pinned is asked for with SHA-2 signatures, which sshd offers (ssh-rsa it does not)."""
    rsa = tmp_path / "host_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    d = start_sshd("rsa", tmp_path, client_key, extra_config=(f"HostKey {rsa}",))
    try:
        pinned = " ".join(rsa.with_suffix(".pub").read_text().split()[:2])
        assert openssh.fetch(target(d, host_keys=(pinned,)), "printf ok", str(tmp_path / "ok"), 100, 10) == 2
    finally:
        d.stop()


def test_a_gateway_keeps_streams_on_paramiko(sshd_factory):
    """ssh would check a jump host's key against the operator's known_hosts, not the pin."""
    d = sshd_factory("a")
    assert not openssh.usable_for(target(d, gateway=target(d)))
