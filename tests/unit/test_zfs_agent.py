"""Host agent, in process: request checks, zfs CLI parsing, libzfs_core errors, nothing destructive."""

from __future__ import annotations

import ast
import base64
import errno
import json
import sys
import types
from pathlib import Path

import pytest

from recovery.zfs import agent

LIST_OUTPUT = (
    b"tank\tfilesystem\t1234567890123456789\t1\t1700000000\t1048576\t-\t/tank\n"
    b"tank/www\tfilesystem\t42\t15\t1700000100\t524288\t-\t/srv/www\n"
    b"tank/www@golden-20261123T120000Z\tsnapshot\t43\t20\t1700000200\t0\t-\t-\n"
    b"tank/www-restored\tfilesystem\t44\t30\t1700000300\t0\ttank/www@s1\t/srv/www with space\n"
)


def request(op: str, **args: object) -> dict:
    return {"v": 1, "nonce": "ab" * 16, "op": op, "args": args, "zfs": None}


def test_parse_zfs_list() -> None:
    rows = agent.parse_zfs_list(LIST_OUTPUT)
    assert rows[0] == {
        "name": "tank", "type": "filesystem", "guid": 1234567890123456789, "createtxg": 1,
        "creation": 1700000000, "used": 1048576, "origin": None, "mountpoint": "/tank",
    }
    assert rows[2]["mountpoint"] is None and rows[2]["type"] == "snapshot"
    assert rows[3]["origin"] == "tank/www@s1" and rows[3]["mountpoint"] == "/srv/www with space"


@pytest.mark.parametrize("bad", [b"tank\tfilesystem\n", b"tank\tfilesystem\tx\t1\t1\t1\t-\t/t\n"])
def test_parse_zfs_list_rejects_unexpected_lines(bad: bytes) -> None:
    with pytest.raises(agent.OperationError, match="zfs list"):
        agent.parse_zfs_list(bad)


def test_parse_zfs_get() -> None:
    out = b"tank/www\treadonly\toff\tdefault\ntank/www\tcom.example:note\ta b\tlocal\n"
    assert agent.parse_zfs_get(out)[1] == {
        "name": "tank/www", "property": "com.example:note", "value": "a b", "source": "local"
    }


@pytest.mark.parametrize("name", ["-rf", "tank/www;reboot", "tank/$(id)", "", "tank\nx", 7, None])
def test_hostile_names_are_refused(name: object) -> None:
    reply = agent.handle(request("promote", name=name))
    assert reply["ok"] is False and "not a valid dataset" in reply["error"]["message"]


def test_unknown_and_destructive_operations_are_not_offered() -> None:
    for op in ("destroy", "rollback", "__import__", None):
        reply = agent.handle(request(op))  # type: ignore[arg-type]
        assert reply["ok"] is False and "unknown operation" in reply["error"]["message"]
    assert not {"destroy", "rollback"} & set(agent.OPERATIONS)


def test_agent_source_calls_nothing_destructive() -> None:
    tree = ast.parse(Path(agent.__file__).read_text())
    words = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    words |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not any(w in {"destroy", "rollback", "lzc_destroy_snaps", "lzc_rollback", "lzc_rollback_to"} for w in words)


def test_agent_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(agent.__file__).read_text())
    modules = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert modules - set(sys.stdlib_module_names) == {"libzfs_core"}


def test_frame_and_decode_request_round_trip() -> None:
    raw = base64.b64encode(json.dumps(request("ping")).encode())
    assert agent.decode_request(raw)["op"] == "ping"
    for bad in (b"not base64!", base64.b64encode(b"[]"), base64.b64encode(b'{"v": 1, "nonce": "XYZ"}')):
        with pytest.raises(agent.OperationError):
            agent.decode_request(bad)


def test_main_without_valid_request_prints_no_frame(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent.main(["garbage"]) == 2
    assert "RECOVERY-AGENT-REPLY" not in capsys.readouterr().out


# --- libzfs_core, faked with pyzfs's exception shapes -----------------------


class ZFSError(Exception):
    errno: int | None = None
    message: str | None = None
    name: bytes | None = None


class SnapshotExists(ZFSError):
    errno = errno.EEXIST
    message = "Snapshot already exists"

    def __init__(self, name: bytes) -> None:
        self.name = name


class SnapshotFailure(ZFSError):
    message = "Creation of snapshot(s) failed for one or more reasons"

    def __init__(self, errors: list[ZFSError], suppressed_count: int) -> None:
        self.errno = errors[0].errno
        self.errors = errors
        self.suppressed_count = suppressed_count


class NotClone(ZFSError):
    errno = errno.EINVAL
    message = "Filesystem is not a clone, can not promote"

    def __init__(self, name: bytes) -> None:
        self.name = name


@pytest.fixture
def lzc(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    calls: list[tuple] = []
    exceptions = types.ModuleType("libzfs_core.exceptions")
    exceptions.ZFSError = ZFSError  # type: ignore[attr-defined]
    module = types.ModuleType("libzfs_core")
    module.exceptions = exceptions  # type: ignore[attr-defined]

    def record(name: str, result: object = None):  # type: ignore[no-untyped-def]
        def function(*args: object) -> object:
            calls.append((name, *args))
            return result
        return function

    module.lzc_snapshot = record("lzc_snapshot")  # type: ignore[attr-defined]
    module.lzc_hold = record("lzc_hold", [])  # type: ignore[attr-defined]
    module.lzc_release = record("lzc_release", [b"tank/www@gone"])  # type: ignore[attr-defined]
    module.lzc_get_holds = record("lzc_get_holds", {b"recovery-golden": 1700000000})  # type: ignore[attr-defined]
    module.lzc_clone = record("lzc_clone")  # type: ignore[attr-defined]
    module.lzc_promote = record("lzc_promote")  # type: ignore[attr-defined]
    module.lzc_rename = record("lzc_rename")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "libzfs_core", module)
    monkeypatch.setitem(sys.modules, "libzfs_core.exceptions", exceptions)
    return types.SimpleNamespace(module=module, calls=calls)


def test_atomic_snapshot_of_several_datasets(lzc: types.SimpleNamespace) -> None:
    reply = agent.handle(request("snapshot", snapshots=["tank/www@incident-r1", "tank/db@incident-r1"]))
    assert reply["ok"] is True
    assert lzc.calls == [("lzc_snapshot", [b"tank/www@incident-r1", b"tank/db@incident-r1"], None)]


def test_snapshot_names_must_name_snapshots(lzc: types.SimpleNamespace) -> None:
    reply = agent.handle(request("snapshot", snapshots=["tank/www"]))
    assert reply["ok"] is False and lzc.calls == []


def test_holds_clone_promote(lzc: types.SimpleNamespace) -> None:
    assert agent.handle(request("hold", holds={"tank/www@golden": "recovery-golden"}))["result"] == {"missing": []}
    assert agent.handle(request("release", holds={"tank/www@gone": ["t"]}))["result"] == {"missing": ["tank/www@gone"]}
    assert agent.handle(request("holds", snapshot="tank/www@golden"))["result"] == {
        "holds": {"recovery-golden": 1700000000}
    }
    agent.handle(request("clone", name="tank/www-r1", origin="tank/www@s1"))
    agent.handle(request("promote", name="tank/www-r1"))
    assert ("lzc_hold", {b"tank/www@golden": b"recovery-golden"}, None) in lzc.calls
    assert ("lzc_clone", b"tank/www-r1", b"tank/www@s1", None) in lzc.calls
    assert ("lzc_promote", b"tank/www-r1") in lzc.calls


def test_a_clone_is_made_with_its_properties_an_index_one_as_its_number(lzc: types.SimpleNamespace) -> None:
    agent.handle(request("clone", name="rpool/ROOT/be-r1", origin="rpool/ROOT/be@s1",
                         props={"canmount": "noauto", "mountpoint": "/"}))
    assert ("lzc_clone", b"rpool/ROOT/be-r1", b"rpool/ROOT/be@s1", {b"canmount": 2, b"mountpoint": b"/"}) in lzc.calls
    refused = agent.handle(request("clone", name="tank/c", origin="tank@s", props={"canmount": "sometimes"}))
    assert refused["ok"] is False and "canmount must be one of off, on, noauto" in refused["error"]["message"]


MOUNTS = (b"rpool/ROOT/debian /mnt/host zfs ro,nosuid 0 0\n"
          b"tank/my\\040www /mnt/host/srv/my\\040www zfs ro 0 0\n"
          b"tank/home@auto-4 /mnt/host/home/.zfs/snapshot/auto-4 zfs ro 0 0\n"
          b"tmpfs /run tmpfs rw 0 0\n")


@pytest.mark.parametrize(("name", "mounted"), [
    ("rpool/ROOT/debian", True), ("rpool/ROOT", True), ("tank/my www", True), ("tank/home", True),
    ("tank/www", False), ("rpool/ROOT/deb", False), ("tmpfs", False),
])
def test_mounted_at_or_below_reads_the_mount_table(tmp_path: Path, name: str, mounted: bool) -> None:
    """A dataset counts as mounted when it, one below it or one of their snapshots is (names with a
    space come octal-escaped); a snapshot mounted under .zfs holds its file system too."""
    (tmp_path / "mounts").write_bytes(MOUNTS)
    assert agent.mounted_at_or_below(name, str(tmp_path / "mounts")) is mounted


def test_an_unreadable_mount_table_counts_as_mounted(tmp_path: Path) -> None:
    assert agent.mounted_at_or_below("tank/www", str(tmp_path / "no-such-table")) is True


def test_rename_is_an_ioctl_when_nothing_is_mounted_and_the_cli_otherwise(
        lzc: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI unmounts and remounts around a rename; lzc_rename does not, so it renames only what
    is not mounted."""
    cli: list[list[str]] = []
    monkeypatch.setattr(agent, "run_zfs", lambda zfs, args, dataset=None: cli.append(args) or b"")
    monkeypatch.setattr(agent, "find_zfs", lambda requested: "/usr/sbin/zfs")
    monkeypatch.setattr(agent, "mounted_at_or_below", lambda name: name == "tank/www")
    assert agent.handle(request("rename", source="tank/www.restore-r1", target="tank/www2"))["ok"] is True
    assert agent.handle(request("rename", source="tank/www", target="tank/www.quarantine-r1"))["ok"] is True
    assert ("lzc_rename", b"tank/www.restore-r1", b"tank/www2") in lzc.calls
    assert cli == [["rename", "tank/www", "tank/www.quarantine-r1"]]


def test_lzc_errors_name_operation_dataset_and_errno(lzc: types.SimpleNamespace) -> None:
    def fail(*args: object) -> None:
        raise SnapshotFailure([SnapshotExists(b"tank/www@incident-r1")], 2)

    lzc.module.lzc_snapshot = fail
    error = agent.handle(request("snapshot", snapshots=["tank/www@incident-r1"]))["error"]
    assert error["op"] == "snapshot" and error["dataset"] == "tank/www@incident-r1"
    assert error["errno"] == errno.EEXIST and error["errname"] == "EEXIST"
    assert "tank/www@incident-r1: Snapshot already exists [EEXIST (File exists)]" in error["message"]
    assert "2 more error(s) suppressed" in error["message"]


def test_single_lzc_error(lzc: types.SimpleNamespace) -> None:
    def fail(*args: object) -> None:
        raise NotClone(b"tank/www")

    lzc.module.lzc_promote = fail
    error = agent.handle(request("promote", name="tank/www"))["error"]
    assert error["message"] == "promote failed: tank/www: Filesystem is not a clone, can not promote [EINVAL (Invalid argument)]"


def test_zfs_specific_errno_is_named() -> None:
    assert "ZFS error 1030" in agent.errno_meaning(1030)


def test_missing_libzfs_core_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libzfs_core", None)
    error = agent.handle(request("promote", name="tank/www"))["error"]
    assert "python3-pyzfs" in error["message"]
    assert agent.handle(request("ping"))["result"]["libzfs_core"] is False


def test_unexpected_exception_still_gives_an_error_reply(lzc: types.SimpleNamespace) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    lzc.module.lzc_promote = explode
    assert agent.handle(request("promote", name="tank/www"))["error"]["message"] == "RuntimeError: boom"


def test_lstat_modes(tmp_path: Path) -> None:
    script = tmp_path / "x"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o4755)
    paths = [base64.b64encode(p).decode() for p in (bytes(script), bytes(tmp_path / "absent"))]
    modes = agent.handle(request("lstat", paths=paths))["result"]["modes"]
    assert modes[0] & 0o7777 == 0o4755 and modes[1] is None


def test_zfs_is_never_looked_up_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(agent.OperationError):
        agent.find_zfs("zfs")  # a relative name would follow $PATH


def test_libzfs_core_calls_are_grouped_by_pool() -> None:
    names = ["rpool/ROOT/debian@s", "tank/www@s", "tank/home@s"]
    assert agent.by_pool(names) == [["rpool/ROOT/debian@s"], ["tank/www@s", "tank/home@s"]]


@pytest.mark.parametrize(("args", "expected"), [
    ({"pool": "rpool", "property": "altroot", "value": "rpool/ROOT/x"}, "only bootfs can be set on a pool"),
    ({"pool": "rpool", "property": "bootfs", "value": "tank/ROOT/x"}, "must be a filesystem of pool rpool"),
    ({"pool": "rpool", "property": "bootfs", "value": "rpool/ROOT/x@s"}, "must be a filesystem of pool rpool"),
    ({"pool": "-o x", "property": "bootfs", "value": "rpool/ROOT/x"}, "'pool' must be a pool name"),
])
def test_only_bootfs_is_set_on_a_pool_and_only_to_one_of_its_filesystems(args: dict, expected: str) -> None:
    reply = agent.handle(request("pool_set", **args))
    assert not reply["ok"] and expected in reply["error"]["message"]


def test_shipped_tells_a_package_upgrade_from_a_changed_program(tmp_path: Path) -> None:
    import hashlib

    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/bin/sudo").write_bytes(b"sudo as shipped")
    (tmp_path / "usr/sbin/sshd").write_bytes(b"sshd with a backdoor")
    (tmp_path / "usr/bin/bash").write_bytes(b"bash as shipped")
    (tmp_path / "usr/sbin/telnetd").write_bytes(b"no package ships this")
    md5 = lambda data: hashlib.md5(data).hexdigest()  # noqa: E731
    (info / "sudo.md5sums").write_text(f"{md5(b'sudo as shipped')}  usr/bin/sudo\n")
    (info / "openssh-server.md5sums").write_text(f"{md5(b'sshd as shipped')}  usr/sbin/sshd\n")
    (info / "bash.md5sums").write_text(f"{md5(b'bash as shipped')}  bin/bash\n")  # merged /usr: named /bin/bash
    files = [base64.b64encode(p).decode() for p in
             (b"/usr/bin/sudo", b"/usr/sbin/sshd", b"/usr/bin/bash", b"/usr/sbin/telnetd")]
    reply = agent.handle(request("shipped", root=base64.b64encode(str(tmp_path).encode()).decode(), files=files))
    assert reply["ok"] and reply["result"]["shipped"] == [True, False, True, None]


def test_appended_tells_a_log_that_only_grew_from_one_cut_or_edited(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def pair(name: str, older: bytes | None, newer: bytes | None) -> list[str]:
        paths = [tmp_path / f"{name}.old", tmp_path / f"{name}.new"]
        for path, data in zip(paths, (older, newer)):
            if data is not None:
                path.write_bytes(data)
        return [base64.b64encode(bytes(p)).decode() for p in paths]

    monkeypatch.setattr(agent, "APPEND_WHOLE", 64)
    monkeypatch.setattr(agent, "APPEND_SAMPLE", 8)
    pairs = [pair("grew", b"a\nb\n", b"a\nb\nc\n"), pair("cut", b"a\nb\n", b""),
             pair("cut-and-grew", b"a\nb\n", b"x\ny\nz\n"), pair("edited", b"a\nb\n", b"a\nX\nc\n"),
             pair("gone", b"a\n", None), pair("big-grew", b"0123456789" * 10, b"0123456789" * 11),
             pair("big-head-edited", b"0123456789" * 10, b"X" + b"0123456789" * 11)]
    appended = agent.handle(request("appended", pairs=pairs))["result"]["appended"]
    assert appended == [True, False, False, False, None, True, False]
