import hashlib
import json

import pytest

from recovery.zfs.manifest import ManifestMissing, _stream, newest


def test_stream_hash_is_checked(tmp_path):
    stream = tmp_path / "tank_www@golden.zfs"
    stream.write_bytes(b"stream bytes")
    record = {"copy": str(stream), "sha256": hashlib.sha256(b"stream bytes").hexdigest()}
    assert _stream(record, "tank/www@golden").ok
    stream.write_bytes(b"stream bytes, altered")
    assert not _stream(record, "tank/www@golden").ok
    stream.unlink()
    assert "missing from the golden store" in _stream(record, "tank/www@golden").detail


def test_newest_manifest(tmp_path):
    with pytest.raises(ManifestMissing, match="recover golden eu-web"):
        newest(tmp_path, "eu-web")
    (tmp_path / "eu-web").mkdir()
    for stamp in ("20261101T000000Z", "20261120T000000Z"):
        (tmp_path / "eu-web" / f"golden-{stamp}.json").write_text(json.dumps({"captured": stamp}))
    assert newest(tmp_path, "eu-web")["captured"] == "20261120T000000Z"
