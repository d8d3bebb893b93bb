"""The lab's private libvirt: no network of the host's comes along, QEMU unconfined, daemons in the namespace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recovery.lab import libvirt_host
from recovery.lab.libvirt_host import BIND_SCRIPT, BINDS, LibvirtHost, _Libvirtd, _process_start, write_private_config
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
    assert argv[-5:] == ["libvirtd", "--config", str(tmp_path / "etc/libvirtd.conf"), "--pid-file", "/run/libvirtd.pid"]
    assert BIND_SCRIPT.rstrip().endswith('exec "$@"')
    for target in ("/etc/libvirt", "/run", "/var/lib/libvirt"):
        assert f"={target}" in BIND_SCRIPT


def test_a_namespace_name_is_ours_and_fresh():
    first, second = IsolatedNetns(), IsolatedNetns()
    assert first.name.startswith("recovery-lab-") and first.name != second.name
    assert first.pids() == []  # not created: nothing to find, nothing to kill


def write_record(state: Path, owner_pid: int, owner_start: str | None) -> None:
    state.mkdir()
    record = {"owner_pid": owner_pid, "owner_start": owner_start, "netns": "recovery-lab-gone",
              "daemons": {"virtlogd": 999999, "libvirtd": 999998}}  # fmt: skip
    (state / "host.json").write_text(json.dumps(record))


def test_a_host_whose_owner_runs_is_not_abandoned(tmp_path: Path):
    write_record(tmp_path / "recovery-lab-libvirt-live", os.getpid(), _process_start(os.getpid()))
    assert LibvirtHost.stop_abandoned(tmp_path) == []
    assert (tmp_path / "recovery-lab-libvirt-live").is_dir()


def test_a_host_whose_owner_is_gone_is_stopped_and_removed(tmp_path: Path):
    state = tmp_path / "recovery-lab-libvirt-dead"
    write_record(state, os.getpid(), "0")  # same PID, another start time: the owner is gone
    host = LibvirtHost._from_record(state)
    assert host is not None and host._recorded == {"virtlogd": 999999, "libvirtd": 999998}
    assert not host.netns.created  # no such namespace here: nothing to enter or delete
    assert LibvirtHost.stop_abandoned(tmp_path) == ["recovery-lab-gone"]
    assert not state.exists()
