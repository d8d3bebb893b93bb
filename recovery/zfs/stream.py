"""What a ``zfs send`` stream says it is: the snapshot it carries and the one it is an increment of.

A stream begins with a BEGIN record (OpenZFS ``dmu_replay_record``): the record
type (4 bytes, 0 for BEGIN) and payload length (4), then ``drr_magic`` (8),
version info (8), creation time (8), objset type (4) and flags (4), then
``drr_toguid`` (8) and ``drr_fromguid`` (8, 0 for a full stream). Integers are in
the sending host's byte order, which the magic number reveals. An increment whose
base is a snapshot of the origin's lineage (a dataset restored by clone and
promote) is a clone stream (flag ``DRR_FLAG_CLONE``): it is received as a new file
system, which ZFS makes a clone of the base it finds by guid.

A copied stream is checked against what was asked for: a host that sent another
snapshot's stream, or an increment of another base, must not pass as evidence.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

#: ``DMU_BACKUP_MAGIC``: the first field of every BEGIN record.
MAGIC = 0x2F5BACBAC
#: Bytes up to and including ``drr_fromguid``.
HEAD = 56
#: ``DRR_FLAG_CLONE`` in ``drr_flags``.
CLONE = 0x1


class StreamHeaderError(ValueError):
    """The file does not begin like a ``zfs send`` stream."""


@dataclass(frozen=True)
class StreamHead:
    to_guid: int
    from_guid: int  # 0: a full stream
    flags: int = 0

    @property
    def incremental(self) -> bool:
        return self.from_guid != 0

    @property
    def clone(self) -> bool:
        return bool(self.flags & CLONE)


def read_head(path: Path) -> StreamHead:
    with path.open("rb") as handle:
        head = handle.read(HEAD)
    if len(head) < HEAD:
        raise StreamHeaderError(f"{path}: {len(head)} bytes, too short for a zfs send stream")
    for order in "<>":
        record, _payload, magic = struct.unpack_from(order + "IIQ", head)
        if magic == MAGIC:
            if record != 0:
                raise StreamHeaderError(f"{path}: the first record is of type {record}, not BEGIN")
            (flags,) = struct.unpack_from(order + "I", head, 36)
            to_guid, from_guid = struct.unpack_from(order + "QQ", head, 40)
            return StreamHead(to_guid, from_guid, flags)
    raise StreamHeaderError(f"{path}: no zfs send stream (its first record has no BEGIN magic)")


def check_head(path: Path, to_guid: int, from_guid: int = 0) -> StreamHead:
    """The stream's head; refused when it is not of snapshot ``to_guid`` (as an increment of ``from_guid``,
    when not 0)."""
    head = read_head(path)
    if (head.to_guid, head.from_guid) != (to_guid, from_guid):
        raise StreamHeaderError(
            f"{path}: the stream carries guid {head.to_guid}"
            + (f" as an increment of guid {head.from_guid}" if head.incremental else " in full")
            + f"; asked for guid {to_guid}" + (f" as an increment of guid {from_guid}" if from_guid else " in full"))
    return head
