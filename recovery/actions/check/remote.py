"""Read-only looks at a host for `recover check`: files and command output, bounded and framed.

Only reading commands are sent (``cat``, ``find``, ``sshd -T``, ``getent``).
Paths that come from the host itself (a DocumentRoot) are quoted. What comes
back is capped per file and in all, and decoded with escapes for bad bytes;
it is judged by :mod:`.parsers`, and shown only through ``for_terminal``.
"""

from __future__ import annotations

import secrets
import shlex
from typing import Protocol

from recovery.transport.result import Result

#: Bytes kept of one file; config files are small, a huge one is cut, not trusted.
FILE_CAP = 256 * 1024
#: Seconds one read may take: a healthy host answers in well under a second.
READ_TIMEOUT = 20.0


class Runs(Protocol):
    def run(self, command: str, timeout: float = 300.0) -> Result: ...


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def output(session: Runs, command: str) -> str:
    """A reading command's stdout as text ('' when it fails: a missing tool or file says nothing)."""
    result = session.run(command, timeout=READ_TIMEOUT)
    return text(result.stdout) if result.ok else ""


def read_files(session: Runs, patterns: list[str], quoted: bool = False) -> dict[str, str]:
    """The regular files ``patterns`` name (shell globs, or exact paths with ``quoted``), path -> text."""
    marker = f"--recovery-check-{secrets.token_hex(8)}--"
    words = " ".join(shlex.quote(p) for p in patterns) if quoted else " ".join(patterns)
    command = (f"for f in {words}; do [ -f \"$f\" ] || continue; "
               f"printf '\\n%s %s\\n' {marker} \"$f\"; head -c {FILE_CAP} -- \"$f\"; done")
    return split_files(session.run(command, timeout=READ_TIMEOUT).stdout, marker)


def split_files(stdout: bytes, marker: str) -> dict[str, str]:
    """Files framed as ``\\nMARKER PATH\\n`` + contents, as a path -> text map."""
    files: dict[str, str] = {}
    for chunk in text(stdout).split(f"\n{marker} ")[1:]:
        path, _, body = chunk.partition("\n")
        files[path] = body
    return files


def find_named(session: Runs, roots: list[str], name: str, limit: int = 200) -> list[str]:
    """Files called ``name`` under ``roots`` (quoted: they may come from the host), at most ``limit``."""
    if not roots:
        return []
    command = (f"find {' '.join(shlex.quote(r) for r in roots)} -xdev -maxdepth 12 -type f "
               f"-name {shlex.quote(name)} 2>/dev/null | head -n {limit}")
    return [line for line in output(session, command).splitlines() if line.startswith("/")]
