"""Files copied off a managed host: private on our side, and never larger than we agreed to take."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from recovery.transport.result import TransportError

#: Bytes read per call while copying.
CHUNK = 1 << 20


class CopyTooLarge(TransportError):
    """The host offered more bytes than the copy may take; never retried (the host decides that size)."""

    transient = False


@contextmanager
def private_file(path: str) -> Iterator[BinaryIO]:
    """``path`` opened for writing, mode 0600 from its creation on (no window where others may read it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "wb") as handle:
        yield handle


def copy_bounded(read: Callable[[int], bytes], write: Callable[[bytes], object], max_bytes: int, what: str) -> int:
    """Copy until ``read`` returns nothing; more than ``max_bytes`` is :class:`CopyTooLarge`."""
    copied = 0
    while chunk := read(min(CHUNK, max_bytes + 1 - copied)):
        copied += len(chunk)
        if copied > max_bytes:
            raise CopyTooLarge(f"{what}: larger than the {max_bytes} bytes expected; copy stopped")
        write(chunk)
    return copied
