"""``zfs diff -FHt`` parsing: exact bytes back, hostile names inert, bad lines reported."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.zfs.diff import (
    ChangeKind,
    DiffFormatError,
    FileType,
    decode_name,
    display_name,
    parse_diff,
)
from tests.support.zfs_output import diff_line, escape_name

HOSTILE_FRAGMENTS = [
    b"\n",
    b"\t",
    b"\x1b[2J\x1b]0;owned\x07",
    b"\xff\xfe",
    b" -> ",
    b"\\0012",
    b"\\",
    b"\xe2\x80\xae",  # right-to-left override
    b"\r",
    b" ",
    b"(+1)",
]

name_bytes = st.lists(
    st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=6,
).map(lambda parts: b"/srv/www/" + b"".join(parts).replace(b"\0", b"_"))

changes = st.tuples(
    st.sampled_from(["-", "+", "M"]),
    st.sampled_from([t.value for t in FileType]),
    name_bytes,
)


def test_plain_lines() -> None:
    out = (
        diff_line("+", "F", b"/srv/www/cgi-bin/awstats.pl")
        + diff_line("R", "F", b"/srv/www/a", b"/srv/www/b")
        + diff_line("M", "F", b"/srv/www/linked", link_delta=1)
        + diff_line("M", "/", b"/srv/www", ctime=(5, 7))
    )
    result = parse_diff(out)
    assert result.malformed == ()
    created, renamed, linked, directory = result.changes
    assert created.kind is ChangeKind.CREATED and created.file_type is FileType.FILE
    assert created.path == b"/srv/www/cgi-bin/awstats.pl"
    assert created.ctime == Decimal("1700000000.123456789")
    assert renamed.new_path == b"/srv/www/b" and renamed.current_path == b"/srv/www/b"
    assert linked.link_delta == 1
    assert directory.ctime == Decimal("5.000000007") and directory.line_no == 4


def test_real_zfs_sample_with_escapes() -> None:
    """A line as OpenZFS prints a name with spaces and UTF-8 (issue #6318 style)."""
    line = b"1700000000.000000001\t+\tF\t/pool/temp/A\\0040with\\0040sp\\0303\\0244ce\n"
    (change,) = parse_diff(line).changes
    assert change.path == "/pool/temp/A with späce".encode()


def test_root_of_dataset_mounted_at_slash() -> None:
    (change,) = parse_diff(b"1700000000.000000001\tM\t/\t\n").changes
    assert change.path == b"/"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"garbage", "fields"),
        (b"x\t+\tF\t/a", "ctime"),
        (b"1.000000000\tX\tF\t/a", "change type"),
        (b"1.000000000\t+\tZ\t/a", "file type"),
        (b"1.000000000\t+\tF\t/a b", "escape"),
        (b"1.000000000\t+\tF\t/a\\012", "escape"),
        (b"1.000000000\t+\tF\t/a\\0400", "escape"),
        (b"1.000000000\t+\tF\t/a\\0000", "NUL"),
        (b"1.000000000\t+\tF\t/\xff", "escape"),
        (b"1.000000000\tR\tF\t/a", "rename"),
        (b"1.000000000\t+\tF\t/a\t/b", "fifth"),
        (b"1.000000000\tM\tF\t/a\t/b", "fifth"),
        (b"1.000000000\t+\tF\t/a\t/b\t/c", "fields"),
    ],
)
def test_malformed_lines_are_reported(line: bytes, reason: str) -> None:
    result = parse_diff(b"1.000000000\t+\tF\t/ok\n" + line + b"\n")
    assert [c.path for c in result.changes] == [b"/ok"]
    (bad,) = result.malformed
    assert bad.line_no == 2 and reason in bad.reason


def test_malformed_excerpt_is_terminal_safe() -> None:
    (bad,) = parse_diff(b"\x1b]0;pwned\x07\x1b[31mred" + b"A" * 1000).malformed
    assert "\x1b" not in bad.excerpt and "\x07" not in bad.excerpt
    assert len(bad.excerpt) < 300


def test_three_digit_legacy_escape_is_not_guessed() -> None:
    with pytest.raises(DiffFormatError):
        decode_name(b"/digits\\040123")


@settings(max_examples=200)
@given(st.lists(changes, max_size=5), st.lists(st.tuples(name_bytes, name_bytes), max_size=3))
def test_round_trip(plain: list[tuple[str, str, bytes]], renames: list[tuple[bytes, bytes]]) -> None:
    out = b"".join(diff_line(c, t, p) for c, t, p in plain)
    out += b"".join(diff_line("R", "F", old, new) for old, new in renames)
    result = parse_diff(out)
    assert result.malformed == ()
    assert [(c.kind.value, c.file_type.value, c.path) for c in result.changes[: len(plain)]] == plain
    assert [(c.path, c.new_path) for c in result.changes[len(plain) :]] == renames


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    result = parse_diff(data)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert len(result.changes) + len(result.malformed) == lines


@settings(max_examples=200)
@given(name_bytes)
def test_display_is_inert(name: bytes) -> None:
    shown = display_name(name)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in shown)
    assert "\u202e" not in shown


def test_display_is_unambiguous() -> None:
    assert display_name(b"/a\x1b") != display_name(b"/a\\x1b")
    assert display_name(b"/a\\x1b") == "/a\\\\x1b"
    assert display_name(b"/x\xff") == "/x\\xff"
    assert display_name("/caf\u00e9".encode()) == "/caf\u00e9"
    assert display_name(b"/index.php ") == "/index.php\\x20"


def test_change_display_shows_rename_and_escapes() -> None:
    (change,) = parse_diff(diff_line("R", "F", b"/a\n", b"/b -> /c")).changes
    assert change.display == "R F /a\\x0a -> /b -> /c"


def test_escape_name_matches_openzfs() -> None:
    assert escape_name(b"a b\\\xff") == b"a\\0040b\\0134\\0377"
