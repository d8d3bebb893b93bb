"""The lab's private libvirt: no network of the host's comes along, QEMU unconfined, daemons in the namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.lab import libvirt_host
from recovery.lab.libvirt_host import BIND_SCRIPT, BINDS, _Libvirtd, write_private_config
from recovery.lab.netns import IsolatedNetns


@pytest.fixture
def host_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc = tmp_path / "host-etc-libvirt"
    (etc / "qemu/networks/autostart").mkdir(parents=True)
    (etc / "qemu/networks/default.xml").write_text("<network><forward mode='nat'/></network>")
    (etc / "qemu/networks/autostart/default.xml").symlink_to("../default.xml")
    (etc / "nwfilter").mkdir()
    (etc / "nwfilter/allow-arp.xml").write_text("<filter/>")
    (etc / "qemu.conf").write_text('security_driver = "apparmor"\n')
    monkeypatch.setattr(libvirt_host, "HOST_CONFIG", etc)
    return etc


def test_private_config_defines_no_network_at_all(host_config: Path, tmp_path: Path):
    state = tmp_path / "state"
    write_private_config(state)
    networks = state / "etc/qemu/networks"
    assert list(networks.iterdir()) == [networks / "autostart"]
    assert not list((networks / "autostart").iterdir())
    assert (state / "etc/nwfilter/allow-arp.xml").exists()
    assert (host_config / "qemu/networks/default.xml").exists()  # the host's own config is untouched
    for name in BINDS:
        assert (state / name).is_dir()


def test_private_config_runs_qemu_unconfined_and_listens_on_a_unix_socket_only(host_config: Path, tmp_path: Path):
    write_private_config(tmp_path / "state")
    qemu = (tmp_path / "state/etc/qemu.conf").read_text()
    assert 'security_driver = "none"' in qemu and "cgroup_controllers = [ ]" in qemu
    daemon = (tmp_path / "state/etc/libvirtd.conf").read_text()
    assert "listen_tcp = 0" in daemon and "listen_tls = 0" in daemon


def test_daemon_is_execd_in_the_namespace_after_the_bind_mounts(tmp_path: Path):
    netns = IsolatedNetns("recovery-lab-test")
    argv = _Libvirtd(netns, tmp_path)._prepare(tmp_path)
    assert argv[:4] == ["ip", "netns", "exec", "recovery-lab-test"]
    assert argv[4:7] == ["sh", "-c", BIND_SCRIPT]
    assert argv[-3:] == ["libvirtd", "--pid-file", "/run/libvirtd.pid"]
    assert BIND_SCRIPT.rstrip().endswith('exec "$@"')
    for target in ("/etc/libvirt", "/run", "/var/lib/libvirt"):
        assert f"={target}" in BIND_SCRIPT


def test_a_namespace_name_is_ours_and_fresh():
    first, second = IsolatedNetns(), IsolatedNetns()
    assert first.name.startswith("recovery-lab-") and first.name != second.name
    assert first.pids() == []  # not created: nothing to find, nothing to kill
