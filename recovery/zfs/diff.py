"""Parse ``zfs diff -FHt`` output from a host into structured changes.

The output comes from a possibly compromised host, so nothing in it is
trusted: every line is checked against the exact shape OpenZFS prints and
anything else becomes a :class:`MalformedLine` instead of an exception.

Shape (OpenZFS ``libzfs_diff.c``), one change per line, fields split by TAB::

    ctime  change  filetype  path  [newpath | (+N)]

- ``ctime`` is ``%10lld.%09lld``: seconds (space padded to width 10) and nanoseconds.
- ``change`` is ``-`` removed, ``+`` created, ``M`` modified, ``R`` renamed.
- ``filetype`` is one of ``B C / > | @ P = F`` or ``?`` when the mode is unknown.
- A rename carries the new path as a fifth field; a link-count change is an
  ``M`` line whose fifth field is the signed delta in parentheses.
- Paths are mountpoint-absolute. Every byte that is not printable ASCII, and
  space and backslash themselves, is written as ``\\0NNN`` (a backslash and four
  octal digits, OpenZFS since 2015; the older three-digit form was ambiguous).
  So a path never holds a raw TAB or newline, and splitting is safe.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from recovery.hostile import for_terminal

#: Longest excerpt of a malformed line kept for the operator.
EXCERPT_LIMIT = 200


class ChangeKind(enum.Enum):
    """What happened to a path between the two snapshots."""

    REMOVED = "-"
    CREATED = "+"
    MODIFIED = "M"
    RENAMED = "R"


class FileType(enum.Enum):
    """``zfs diff -F`` file type letters (``ls -F`` style)."""

    BLOCK_DEVICE = "B"
    CHAR_DEVICE = "C"
    DIRECTORY = "/"
    DOOR = ">"
    FIFO = "|"
    SYMLINK = "@"
    EVENT_PORT = "P"
    SOCKET = "="
    FILE = "F"
    UNKNOWN = "?"


@dataclass(frozen=True)
class Change:
    """One line of ``zfs diff``: a path that differs between two states of a dataset."""

    line_no: int
    ctime: Decimal
    kind: ChangeKind
    file_type: FileType
    path: bytes
    new_path: bytes | None = None
    link_delta: int | None = None

    @property
    def current_path(self) -> bytes:
        """Where the object lives in the newer state (the new name after a rename)."""
        return self.new_path if self.new_path is not None else self.path

    @property
    def display(self) -> str:
        """The change as one terminal-safe line, names shown escaped."""
        text = f"{self.kind.value} {self.file_type.value} {display_name(self.path)}"
        if self.new_path is not None:
            text += f" -> {display_name(self.new_path)}"
        if self.link_delta is not None:
            text += f" (links {self.link_delta:+d})"
        return text


@dataclass(frozen=True)
class MalformedLine:
    """A line that is not ``zfs diff -FHt`` output; kept so the operator sees it."""

    line_no: int
    excerpt: str
    reason: str


@dataclass(frozen=True)
class DiffResult:
    """Everything one ``zfs diff`` output held: the changes and the lines that were not."""

    changes: tuple[Change, ...]
    malformed: tuple[MalformedLine, ...]


_Code = TypeVar("_Code", ChangeKind, FileType)


class DiffFormatError(ValueError):
    """Why one line is not ``zfs diff -FHt`` output."""


_CTIME = re.compile(rb" *(-?[0-9]+)\.([0-9]{9})")
# Raw bytes zfs prints unescaped: printable ASCII except space and backslash.
_ESCAPED_NAME = re.compile(rb"(?:[\x21-\x5b\x5d-\x7e]|\\0[0-3][0-7]{2})*")
_ESCAPE = re.compile(rb"\\(0[0-3][0-7]{2})")
_LINK_DELTA = re.compile(rb"\(([+-][0-9]{1,10})\)")
_CHANGE_KINDS = {kind.value.encode(): kind for kind in ChangeKind}
_FILE_TYPES = {ftype.value.encode(): ftype for ftype in FileType}


def parse_diff(output: bytes) -> DiffResult:
    """Parse the whole stdout of ``zfs diff -FHt``; never raises on content."""
    changes: list[Change] = []
    malformed: list[MalformedLine] = []
    lines = output.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line_no, line in enumerate(lines, start=1):
        try:
            changes.append(parse_line(line, line_no))
        except DiffFormatError as problem:
            malformed.append(MalformedLine(line_no, _excerpt(line), str(problem)))
    return DiffResult(tuple(changes), tuple(malformed))


def parse_line(line: bytes, line_no: int) -> Change:
    """Parse one line (without its newline); raises :class:`DiffFormatError` with the reason."""
    fields = line.split(b"\t")
    if not 4 <= len(fields) <= 5:
        raise DiffFormatError(f"expected 4 or 5 tab-separated fields, found {len(fields)}")
    ctime = _parse_ctime(fields[0])
    kind = _lookup(_CHANGE_KINDS, fields[1], "change type")
    file_type = _lookup(_FILE_TYPES, fields[2], "file type")
    path = decode_name(fields[3])
    new_path, link_delta = _parse_extra(kind, fields[4] if len(fields) == 5 else None)
    return Change(line_no, ctime, kind, file_type, path, new_path, link_delta)


def decode_name(field: bytes) -> bytes:
    """Turn a ``stream_bytes``-escaped path back into the exact bytes of the name.

    An empty field is the root of a dataset mounted at ``/`` (zfs drops the
    mountpoint ``/`` to avoid a double slash).
    """
    if not _ESCAPED_NAME.fullmatch(field):
        raise DiffFormatError("path holds bytes zfs always escapes, or a broken escape")
    name = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field)
    if b"\0" in name:
        raise DiffFormatError("path holds a NUL byte, which no file name can")
    return name or b"/"


def display_name(name: bytes, limit: int = 400) -> str:
    """A file name as a person may safely see it: exact, unambiguous, inert.

    Valid UTF-8 is shown as text; other bytes as ``\\xNN``; control, format
    (e.g. bidirectional overrides) and other invisible characters as escapes;
    a backslash is doubled so a name can never fake an escape; a trailing
    space is made visible.
    """
    text = name.decode("utf-8", errors="surrogateescape")
    shown = "".join(_display_char(ch) for ch in text)
    if shown.endswith(" "):
        shown = shown[:-1] + "\\x20"
    return for_terminal(shown, limit=limit)


def _display_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if ch == " " or ch.isprintable():
        return ch
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _parse_ctime(field: bytes) -> Decimal:
    match = _CTIME.fullmatch(field)
    if not match:
        raise DiffFormatError("first field is not a ctime of the form SECONDS.NANOSECONDS")
    return Decimal(f"{match.group(1).decode()}.{match.group(2).decode()}")


def _lookup(table: dict[bytes, _Code], field: bytes, what: str) -> _Code:
    try:
        return table[field]
    except KeyError:
        raise DiffFormatError(f"unknown {what}") from None


def _parse_extra(kind: ChangeKind, field: bytes | None) -> tuple[bytes | None, int | None]:
    """The fifth field: the new path of a rename, or a modification's link delta."""
    if kind is ChangeKind.RENAMED:
        if field is None:
            raise DiffFormatError("rename without a new path")
        return decode_name(field), None
    if field is None:
        return None, None
    match = _LINK_DELTA.fullmatch(field) if kind is ChangeKind.MODIFIED else None
    if not match:
        raise DiffFormatError(f"unexpected fifth field for change type {kind.value}")
    return None, int(match.group(1))


def _excerpt(line: bytes) -> str:
    return for_terminal(line[:EXCERPT_LIMIT], limit=EXCERPT_LIMIT)
