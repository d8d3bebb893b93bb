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

The host decides how long the output is, so it is parsed as a stream of
pieces: at most ``max_bytes`` bytes and ``max_lines`` lines are accepted (more
raises :class:`DiffLimitExceeded`: a diff cut short could hide an indicator
past the cut, so it is refused, never judged in part), an overlong line is
malformed without being buffered, and malformed lines are all counted but
only the first :data:`MALFORMED_KEPT` are kept.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from recovery.hostile import for_terminal

#: Longest excerpt of a malformed line kept for the operator.
EXCERPT_LIMIT = 200
#: Default caps on one diff: an ordinary web tree's 100k changes are about 10 MB.
MAX_DIFF_BYTES = 64 * 1024 * 1024
MAX_DIFF_LINES = 1_000_000
#: Longest line OpenZFS can print: two PATH_MAX (4096 byte) names, every byte escaped (5 bytes), and fields.
MAX_LINE = 2 * 4096 * 5 + 64
#: Malformed lines kept with an excerpt (all of them are counted).
MALFORMED_KEPT = 100
#: Bytes handed to the line splitter at a time when the whole output is already in memory.
PIECE = 1024 * 1024


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
    """Everything one ``zfs diff`` output held: the changes and the lines that were not.

    ``malformed`` keeps the first :data:`MALFORMED_KEPT` bad lines;
    ``malformed_count`` counts all of them, so a caller can say how many it did not show.
    """

    changes: tuple[Change, ...]
    malformed: tuple[MalformedLine, ...]
    malformed_count: int = 0


_Code = TypeVar("_Code", ChangeKind, FileType)


class DiffFormatError(ValueError):
    """Why one line is not ``zfs diff -FHt`` output."""


class DiffLimitExceeded(ValueError):
    """The output is larger than the caller accepts: refused whole, never judged in part."""


_CTIME = re.compile(rb" *(-?[0-9]{1,19})\.([0-9]{9})")  # %10lld: at most 19 digits
# Raw bytes zfs prints unescaped: printable ASCII except space and backslash.
_ESCAPED_NAME = re.compile(rb"(?:[\x21-\x5b\x5d-\x7e]|\\0[0-3][0-7]{2})*")
_ESCAPE = re.compile(rb"\\(0[0-3][0-7]{2})")
_LINK_DELTA = re.compile(rb"\(([+-][0-9]{1,10})\)")
_CHANGE_KINDS = {kind.value.encode(): kind for kind in ChangeKind}
_FILE_TYPES = {ftype.value.encode(): ftype for ftype in FileType}


def parse_diff(output: bytes, max_bytes: int = MAX_DIFF_BYTES, max_lines: int = MAX_DIFF_LINES) -> DiffResult:
    """Parse the whole stdout of ``zfs diff -FHt``; raises only :class:`DiffLimitExceeded`."""
    return parse_diff_stream((output[i : i + PIECE] for i in range(0, len(output), PIECE)), max_bytes, max_lines)


def parse_diff_stream(
    pieces: Iterable[bytes], max_bytes: int = MAX_DIFF_BYTES, max_lines: int = MAX_DIFF_LINES
) -> DiffResult:
    """Parse ``zfs diff -FHt`` output arriving in pieces (e.g. as it inflates), within the caps."""
    changes: list[Change] = []
    malformed: list[MalformedLine] = []
    bad = 0
    for line_no, (line, overlong) in enumerate(_lines(pieces, max_bytes), start=1):
        if line_no > max_lines:
            raise DiffLimitExceeded(f"diff output has more than {max_lines} lines")
        try:
            if overlong:
                raise DiffFormatError(f"line longer than {MAX_LINE} bytes")
            changes.append(parse_line(line, line_no))
        except DiffFormatError as problem:
            bad += 1
            if len(malformed) < MALFORMED_KEPT:
                malformed.append(MalformedLine(line_no, _excerpt(line), str(problem)))
    return DiffResult(tuple(changes), tuple(malformed), bad)


def _lines(pieces: Iterable[bytes], max_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """The stream's lines without newlines, each with whether it was overlong.

    Of an overlong line only its head is held (and returned), so one endless
    line costs :data:`MAX_LINE` bytes, not the size of the stream.
    """
    pending, overlong, seen = b"", False, 0
    for piece in pieces:
        seen += len(piece)
        if seen > max_bytes:
            raise DiffLimitExceeded(f"diff output exceeds {max_bytes} bytes")
        *complete, rest = (pending + piece).split(b"\n")
        for line in complete:
            yield line[:MAX_LINE], overlong or len(line) > MAX_LINE
            overlong = False
        overlong = overlong or len(rest) > MAX_LINE
        pending = rest[:MAX_LINE]
    if pending or overlong:
        yield pending, overlong


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
