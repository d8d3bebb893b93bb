"""Property-based fuzzing of the three parsers that read host bytes: only their own errors may come out.

Inputs are built from the grammar's own pieces (markers, nonces, numbers of every size, base64, tabs,
escapes) mixed with random bytes, so the fuzzer reaches deep into each parser, not just its first check.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recovery.transport.console_frame import ConsoleFrameError, FrameReader
from recovery.zfs.client import AgentReplyError, extract_reply
from recovery.zfs.diff import MALFORMED_KEPT, parse_diff_stream

NONCE = "0123456789abcdef" * 2
AGENT_MARK = b"RECOVERY-AGENT-REPLY v1 " + NONCE.encode()
CONSOLE_MARK = b"RCV0123456789abcdef0123"

numbers = st.one_of(st.integers(0, 3), st.integers(0, 10**6), st.sampled_from([10**12, 10**19, 2**64, 10**30]))
number = numbers.map(lambda n: str(n).encode())
digest = st.sampled_from([b"0" * 64, b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])
base64ish = st.binary(max_size=40).map(lambda b: __import__("base64").b64encode(b))
noise = st.binary(max_size=30)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def joined(parts: list[bytes]) -> bytes:
    return b"".join(part + b"\n" for part in parts)


agent_line = st.one_of(
    st.tuples(number, number, digest).map(lambda t: AGENT_MARK + b" begin " + b" ".join(t)),
    st.tuples(number, base64ish).map(lambda t: AGENT_MARK + b" " + t[0] + b" " + t[1]),
    st.just(AGENT_MARK + b" end"),
    noise,
    st.tuples(noise, st.sampled_from([AGENT_MARK, b"RECOVERY-AGENT-REPLY v1 ffff" * 2])).map(b"".join),
)


@FAST
@given(st.lists(agent_line, max_size=12), st.sampled_from([b"\n", b"\r\n"]))
def test_agent_reply_framing_raises_only_reply_errors(lines: list[bytes], end: bytes) -> None:
    try:
        extract_reply(end.join(lines), NONCE, max_reply=10**6)
    except AgentReplyError:
        pass


console_line = st.one_of(
    st.tuples(st.sampled_from([b"o", b"e"]), base64ish).map(lambda t: CONSOLE_MARK + b" " + b" ".join(t)),
    st.tuples(st.sampled_from([b"o-end", b"e-end"]), number, digest, st.sampled_from([b"", b"  -"])).map(
        lambda t: CONSOLE_MARK + b" " + t[0] + b" " + t[1] + b" " + t[2] + t[3]),
    numbers.filter(lambda n: n < 10**19).map(lambda n: CONSOLE_MARK + b" exit " + str(n).encode()),
    st.just(CONSOLE_MARK + b" garbled"),
    st.just(b"[   12.345678] kernel: noise"),
    noise,
)


@FAST
@given(st.lists(console_line, max_size=12), st.lists(st.integers(1, 64), max_size=6))
def test_console_framing_raises_only_frame_errors(lines: list[bytes], cuts: list[int]) -> None:
    reader, data, at = FrameReader(CONSOLE_MARK, cap=4096), joined(lines), 0
    for cut in cuts:  # the console delivers bytes in arbitrary pieces
        reader.feed(data[at : at + cut])
        at += cut
    reader.feed(data[at:])
    try:
        reader.result(0.0)
    except ConsoleFrameError:
        pass


def test_console_exit_status_of_5000_digits_is_a_frame_error() -> None:
    reader = FrameReader(CONSOLE_MARK, cap=4096)
    reader.feed(CONSOLE_MARK + b" exit " + b"9" * 5000 + b"\n")
    with pytest.raises(ConsoleFrameError):
        reader.result(0.0)


diff_field = st.one_of(
    st.sampled_from([b"1700000000.123456789", b"-1.000000000", b"9" * 30 + b".000000000", b"+", b"-", b"M", b"R",
                     b"F", b"/", b"@", b"?", b"(+1)", b"(-99999999999)", b"\\0012", b"\\0400", b"\\", b""]),
    st.binary(max_size=12).map(lambda b: b"/srv/www/" + b),
)
diff_line = st.lists(diff_field, min_size=1, max_size=6).map(b"\t".join)


@FAST
@given(st.lists(diff_line, max_size=20), st.lists(st.integers(1, 50), max_size=5))
def test_diff_stream_counts_every_line_and_never_raises(lines: list[bytes], cuts: list[int]) -> None:
    data, pieces, at = joined(lines), [], 0
    for cut in cuts:
        pieces.append(data[at : at + cut])
        at += cut
    pieces.append(data[at:])
    result = parse_diff_stream(pieces)
    assert len(result.changes) + result.malformed_count == data.count(b"\n")
    assert len(result.malformed) == min(result.malformed_count, MALFORMED_KEPT)
