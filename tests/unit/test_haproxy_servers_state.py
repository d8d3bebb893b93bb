"""``show servers state`` parsing: the real format, and answers that are broken or hostile."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recovery.traffic.haproxy import ServerRow, ServersStateError, parse_servers_state

HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
    "srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)
# Captured from HAProxy 2.6 after "set server web/eu-web state drain"; the mirror is "disabled" in the config.
REAL = f"""1
{HEADER}
3 web 1 eu-web 127.0.0.1 2 8 1 1 0 1 0 2 0 0 0 0 - 55373 - 0 0 - - 0
3 web 2 us-web 127.0.0.1 2 0 1 1 0 1 0 2 0 0 0 0 - 48863 - 0 0 - - 0
3 web 3 mirror 127.0.0.1 0 5 1 1 0 1 0 0 8 0 0 0 - 43149 - 0 0 - - 0

"""


def _answer(*rows: str, header: str = HEADER) -> str:
    return "\n".join(["1", header, *rows]) + "\n"


def test_real_answer() -> None:
    rows = parse_servers_state(REAL)
    assert [(row.server, row.admin_state) for row in rows] == [
        ("eu-web", "drain"),
        ("us-web", "ready"),
        ("mirror", "maint"),
    ]
    assert rows[0] == ServerRow("web", "eu-web", op_state=2, admin_bits=8)


@pytest.mark.parametrize(
    ("bits", "state"),
    [(0x00, "ready"), (0x04, "ready"), (0x40, "ready"), (0x01, "maint"), (0x02, "maint"), (0x20, "maint"),
     (0x05, "maint"), (0x08, "drain"), (0x10, "drain"), (0x0C, "drain"), (0x09, "maint")],
)
def test_admin_bits(bits: int, state: str) -> None:
    """Configuration maintenance (0x04) alone is a disabled server made ready at runtime."""
    assert ServerRow("web", "s", 2, bits).admin_state == state


def test_columns_are_found_by_name() -> None:
    header = "# srv_admin_state srv_name be_name srv_op_state"
    assert parse_servers_state(_answer("8 eu-web web 2", header=header)) == [ServerRow("web", "eu-web", 2, 8)]


def test_comment_lines_are_skipped() -> None:
    assert parse_servers_state(_answer("# a comment", "3 web 1 eu-web 127.0.0.1 2 0 1 1")) == [
        ServerRow("web", "eu-web", 2, 0)
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "unsupported format"),
        ("Unknown command.\n", "unsupported format"),
        ("2\n" + HEADER + "\n", "unsupported format"),
        ("1\n3 web 1 eu-web 127.0.0.1 2 0\n", "missing column header"),
        ("1\n# be_id be_name srv_id srv_name\n", "lacks srv_op_state, srv_admin_state"),
        (_answer("3 web 1 eu-web"), "line 3 has too few fields"),
        (_answer("3 web 1 eu-web 127.0.0.1 up 0"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 0x08"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 1_0"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 \u0663 0"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 9 0"), "out of range"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 -1"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 256"), "out of range"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 99999999999999999999"), "non-numeric state"),
        (_answer("3 web 1 eu-web 127.0.0.1 2 0", "3 web 1 eu-web 127.0.0.1 2 8"), "eu-web listed twice"),
    ],
)
def test_broken_answers_are_rejected(text: str, complaint: str) -> None:
    with pytest.raises(ServersStateError, match=complaint):
        parse_servers_state(text)


def test_terminal_escapes_in_an_answer_are_made_inert() -> None:
    hostile = "3 web 1 \x1b]0;owned\x07eu-web 127.0.0.1 two 0"
    with pytest.raises(ServersStateError) as error:
        parse_servers_state(_answer(hostile))
    assert "\x1b" not in str(error.value) and "\x07" not in str(error.value)


def test_huge_line_is_shown_capped() -> None:
    with pytest.raises(ServersStateError) as error:
        parse_servers_state(_answer("3 web 1 eu-web 127.0.0.1 x " + "A" * 1_000_000))
    assert len(str(error.value)) < 1000


@given(st.text())
def test_any_text_parses_or_is_rejected_cleanly(text: str) -> None:
    try:
        rows = parse_servers_state(text)
    except ServersStateError:
        return
    assert all(row.admin_state in ("ready", "drain", "maint") for row in rows)


@given(st.lists(st.tuples(st.integers(), st.integers(), st.text(min_size=1).filter(lambda s: s.split() == [s]))))
def test_any_rows_parse_or_are_rejected_cleanly(rows: list[tuple[int, int, str]]) -> None:
    lines = [f"3 web 1 {name} 127.0.0.1 {op} {admin}" for op, admin, name in rows]
    try:
        parsed = parse_servers_state(_answer(*lines))
    except ServersStateError:
        return
    assert len(parsed) == len(rows)
