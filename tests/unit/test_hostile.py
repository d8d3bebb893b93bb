from recovery.hostile import CappedBuffer, for_terminal


def test_escape_sequences_never_reach_the_terminal():
    hostile = b"ok\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x9b1m\rover\x00"
    text = for_terminal(hostile)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x9b" not in text
    assert text.startswith("ok") and "red" in text


def test_invalid_utf8_is_shown_escaped():
    assert for_terminal(b"caf\xe9") == "caf\\xe9"


def test_long_output_is_cut():
    assert for_terminal(b"x" * 5000, limit=10) == "xxxxxxxxxx... [4990 more characters]"


def test_capped_buffer_keeps_the_head_and_says_so():
    buf = CappedBuffer(cap=5)
    buf.write(b"abc")
    buf.write(b"defgh")
    assert buf.getvalue() == b"abcde" and buf.truncated
