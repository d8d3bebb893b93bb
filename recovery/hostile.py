"""Safe handling of bytes that come from a managed (possibly compromised) host.

Everything a host prints is hostile: it may hold terminal escape sequences that
rewrite the operator's screen, invalid UTF-8, or gigabytes of noise. Nothing
from a host reaches a terminal, a log or a report without passing through here.
"""

from __future__ import annotations

import re

#: Default cap on output kept from one command.
OUTPUT_CAP = 4 * 1024 * 1024

# CSI, OSC, DCS/PM/APC strings and single-character escapes (ECMA-48).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC/DCS/SOS/PM/APC ... ST
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(data: bytes | str, limit: int = 2000) -> str:
    """Text safe to show a person: decoded, escapes removed, controls made visible, capped."""
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > limit:
        text = text[:limit] + f"... [{len(text) - limit} more characters]"
    return text


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
