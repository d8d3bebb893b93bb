"""Safe handling of bytes that come from a managed (possibly compromised) host.

Everything a host prints is hostile: it may hold terminal escape sequences that
rewrite the operator's screen, invalid UTF-8, or gigabytes of noise. Nothing
from a host reaches a terminal, a log or a report without passing through here.
"""

from __future__ import annotations

import re

from recovery.secrets import REDACTOR

#: Default cap on output kept from one command.
OUTPUT_CAP = 4 * 1024 * 1024

# CSI, OSC, DCS/PM/APC strings and single-character escapes (ECMA-48).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC/DCS/SOS/PM/APC ... ST
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# C0 and C1 controls but TAB and LF; bidirectional overrides and line/paragraph separators (they
# reorder or break what a person reads); lone surrogates (they cannot even be written as UTF-8).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\n\t]")


def for_terminal(data: bytes | str, limit: int = 2000, *, newlines: bool = True) -> str:
    """Text safe to show a person: decoded, secrets masked, escapes removed, controls made visible, capped.

    Secrets are masked first, so neither escaping nor the cut can leave part of
    one readable. With ``newlines=False`` TAB and LF are made visible too, so no
    newline from a host can start a line of its own (a table cell, a log line).
    """
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    text = _ESCAPES.sub("", REDACTOR.text(text))
    text = _CONTROLS.sub(_visible, text)
    if not newlines:
        text = _LINE_BREAKS.sub(_visible, text)
    if len(text) > limit:
        text = text[:limit] + f"... [{len(text) - limit} more characters]"
    return text


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class CappedBuffer:
    """A byte sink that keeps at most ``cap`` bytes and remembers it dropped the rest."""

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, data: bytes) -> None:
        room = self.cap - self._size
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            self._chunks.append(data)
            self._size += len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)
