"""What OpenZFS prints: a test-side model of ``zfs diff -FHt`` and ``zfs list -Hp``.

Mirrors ``stream_bytes`` in OpenZFS ``libzfs_diff.c``: printable ASCII other
than space and backslash is written as is, every other byte as ``\\0NNN``.
"""

from __future__ import annotations


def escape_name(name: bytes) -> bytes:
    out = bytearray()
    for byte in name:
        if 0x20 < byte < 0x7F and byte != 0x5C:
            out.append(byte)
        else:
            out += b"\\%04o" % byte
    return bytes(out)


def diff_line(
    change: str,
    ftype: str,
    path: bytes,
    new_path: bytes | None = None,
    ctime: tuple[int, int] = (1700000000, 123456789),
    link_delta: int | None = None,
) -> bytes:
    fields = [b"%10d.%09d" % ctime, change.encode(), ftype.encode(), escape_name(path)]
    if new_path is not None:
        fields.append(escape_name(new_path))
    if link_delta is not None:
        fields.append(b"(%+d)" % link_delta)
    return b"\t".join(fields) + b"\n"
