"""Evidence streams: what a copied stream says it carries is checked, and a stream is an increment of
golden only where golden's full stream is in the store and the host still has golden as captured."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from recovery.engine.registry import StepFailed
from recovery.report.model import Report
from recovery.report.tables import findings
from recovery.steps.preserve import Base, PreserveParams, copy_stream, golden_base
from recovery.steps.zfs_host import Listing
from recovery.transport.result import TransportError
from recovery.zfs.client import Dataset
from recovery.zfs.stream import MAGIC, StreamHeaderError, check_head, read_head

GOLDEN = "tank/www@golden-20261202T000000Z"
INCIDENT = "tank/www@incident-run"


def head(to_guid: int, from_guid: int = 0, order: str = "<", record: int = 0, magic: int = MAGIC,
         flags: int = 0xC) -> bytes:
    """A BEGIN record as OpenZFS writes it: type, payload length, magic, version, time, objset type, flags,
    toguid, fromguid, then the name (flags 0xc as a lab guest's ``zfs send -c`` sets them, 0xd a clone stream)."""
    return (struct.pack(order + "IIQQQIIQQ", record, 0, magic, 0x11, 1_700_000_000, 2, flags, to_guid, from_guid)
            + b"tank/www@incident-run".ljust(256, b"\0") + b"\0" * 64)


def test_a_stream_header_in_either_byte_order_names_its_snapshot_and_base(tmp_path: Path) -> None:
    for order in "<>":
        path = tmp_path / f"s{order == '<'}.zfs"
        path.write_bytes(head(7, 5, order, flags=0xD))
        parsed = read_head(path)
        assert (parsed.to_guid, parsed.from_guid, parsed.incremental, parsed.clone) == (7, 5, True, True)
    full = tmp_path / "full.zfs"
    full.write_bytes(head(7))
    assert not read_head(full).incremental and not read_head(full).clone
    assert check_head(full, 7).to_guid == 7


@pytest.mark.parametrize("data, said", [
    (b"", "too short"),
    (head(7, magic=0xDEADBEEF), "no zfs send stream"),
    (head(7, record=1), "not BEGIN"),
    (b"\x1b[2J" * 100, "no zfs send stream"),
])
def test_what_is_not_a_stream_is_refused(tmp_path: Path, data: bytes, said: str) -> None:
    path = tmp_path / "bad.zfs"
    path.write_bytes(data)
    with pytest.raises(StreamHeaderError, match=said):
        read_head(path)


def test_a_stream_of_another_snapshot_or_another_base_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zfs"
    path.write_bytes(head(8, 5))
    with pytest.raises(StreamHeaderError, match="carries guid 8 as an increment of guid 5; asked for guid 7"):
        check_head(path, 7, 5)
    with pytest.raises(StreamHeaderError, match="asked for guid 8 in full"):
        check_head(path, 8)


def snapshot(name: str, guid: int, txg: int) -> Dataset:
    return Dataset(name, "snapshot", guid, txg, 0, None, None, None)


def context(tmp_path: Path, stream: bytes = b"", fail: Exception | None = None) -> SimpleNamespace:
    """A step context whose host answers ``fetch`` with ``stream`` (or ``fail``); commands are recorded."""
    asked: list[str] = []

    def fetch(command: str, local: str, max_bytes: int, timeout: float = 300.0, large: bool = False) -> int:
        asked.append(command + (" [large]" if large else ""))
        if fail:
            Path(local).write_bytes(b"half")
            raise fail
        Path(local).write_bytes(stream)
        return len(stream)

    session = SimpleNamespace(fetch=fetch)
    return SimpleNamespace(host="web1", timeout=60.0, asked=asked, here=SimpleNamespace(session=lambda: session),
                           params=PreserveParams(store=str(tmp_path / "store")))


def store_golden(tmp_path: Path, guid: int = 5, txg: int = 10, stream: bool = True) -> None:
    host = tmp_path / "store" / "web1"
    host.mkdir(parents=True)
    copy = host / "golden.zfs"
    if stream:
        copy.write_bytes(head(guid))
    manifest = {"datasets": {"tank/www": {"snapshot": GOLDEN, "snapshot_guid": guid, "createtxg": txg,
                                          "stream": {"copy": str(copy), "sha256": "ab" * 32}}}}
    (host / "golden-20261202T000000Z.json").write_text(json.dumps(manifest))


def test_golden_is_the_base_only_as_captured_and_with_its_stream_in_the_store(tmp_path: Path) -> None:
    listing = Listing((snapshot(GOLDEN, 5, 10), snapshot(INCIDENT, 7, 20)))
    ctx = context(tmp_path)
    assert golden_base(ctx, listing, "tank/www") is None  # no manifest yet
    store_golden(tmp_path)
    base = golden_base(ctx, listing, "tank/www")
    assert base is not None and (base.snapshot, base.guid, base.sha256) == (GOLDEN, 5, "ab" * 32)
    assert golden_base(ctx, listing, "tank/other") is None
    assert golden_base(ctx, Listing((snapshot(GOLDEN, 6, 10),)), "tank/www") is None  # another snapshot of that name
    assert golden_base(ctx, Listing((snapshot(GOLDEN, 5, 11),)), "tank/www") is None
    Path(base.stream).unlink()
    assert golden_base(ctx, listing, "tank/www") is None  # the store lost golden's stream: copy in full


def test_a_manifest_of_the_wrong_shape_means_a_full_copy_not_a_crash(tmp_path: Path) -> None:
    store_golden(tmp_path)
    manifest = next((tmp_path / "store" / "web1").glob("*.json"))
    for text in ('{"datasets": {"tank/www": {"snapshot": 1}}}', "[1, 2]", "not json"):
        manifest.write_text(text)
        assert golden_base(context(tmp_path), Listing((snapshot(GOLDEN, 5, 10),)), "tank/www") is None


def test_an_increment_is_sent_from_golden_and_checked_to_be_one(tmp_path: Path) -> None:
    base = Base(GOLDEN, 5, "/store/golden.zfs", "ab" * 32)
    ctx = context(tmp_path, head(7, 5))
    client = SimpleNamespace(zfs="/usr/sbin/zfs", get=lambda names, props: [{"value": "1000"}])
    local = tmp_path / "evidence" / "s.zfs"
    sent = copy_stream(ctx, client, INCIDENT, local, 7, base)
    assert ctx.asked == [f"/usr/sbin/zfs send -c -i {GOLDEN} {INCIDENT}"]  # an increment: on the session
    assert sent["bytes"] == local.stat().st_size and len(sent["sha256"]) == 64


@pytest.mark.parametrize("stream, base", [(head(7), Base(GOLDEN, 5, "/g", "ab")),  # full, though asked for an increment
                                          (head(7, 9), Base(GOLDEN, 5, "/g", "ab")),  # an increment of another
                                          (head(8), None),  # another snapshot
                                          (b"<html>", None)])
def test_a_copy_that_is_not_the_evidence_asked_for_fails_the_step_and_leaves_nothing(
        tmp_path: Path, stream: bytes, base: Base | None) -> None:
    ctx = context(tmp_path, stream)
    client = SimpleNamespace(zfs=None, get=lambda names, props: [{"value": "1000"}])
    local = tmp_path / "evidence" / "s.zfs"
    with pytest.raises(StepFailed, match=f"web1: copying the stream of {INCIDENT}"):
        copy_stream(ctx, client, INCIDENT, local, 7, base)
    assert list(local.parent.iterdir()) == []


def test_a_stream_that_breaks_off_leaves_no_partial_copy(tmp_path: Path) -> None:
    ctx = context(tmp_path, fail=TransportError("the stream broke off"))
    client = SimpleNamespace(zfs=None, get=lambda names, props: [{"value": "1000"}])
    local = tmp_path / "evidence" / "s.zfs"
    with pytest.raises(StepFailed, match="broke off"):
        copy_stream(ctx, client, INCIDENT, local, 7)
    assert ctx.asked == [f"/usr/sbin/zfs send -c {INCIDENT} [large]"] and list(local.parent.iterdir()) == []


def test_the_report_says_which_evidence_is_an_increment_and_of_which_golden_stream() -> None:
    report = Report("r1", "web1", "done", 0.0, 1.0, "h", True, evidence=[
        {"host": "web1", "snapshot": INCIDENT, "guid": 7, "bytes": 900, "sha256": "cd" * 32, **Base(
            GOLDEN, 5, "/store/web1/golden.zfs", "ab" * 32).fields()},
        {"host": "web1", "snapshot": "tank/db@incident-run", "guid": 8, "bytes": 5000, "sha256": "ef" * 32},
        {"host": "web1", "snapshot": "tank/logs@incident-run", "guid": 9}])
    report.evidence.append({**report.evidence[0], "snapshot": "rpool/ROOT/os.quarantine-r1@incident-run",
                            "base_clone": True})
    (evidence,) = [t for t in findings(report) if t.anchor == "evidence"]
    assert [row[5] for row in evidence.rows] == [
        f"{GOLDEN} (guid 5; /store/web1/golden.zfs, sha256 {'ab' * 32})", "- (a full stream)", "-",
        f"{GOLDEN} (guid 5; /store/web1/golden.zfs, sha256 {'ab' * 32}); a clone stream: receive it as a new file system"]
