"""Reading the seed lessons out of a host's own configuration files, as text, without trusting it.

Each function takes file contents the host sent (already decoded, already
capped) and returns findings; nothing here runs anything. A file that cannot
be parsed is read as far as it goes: a strange line is skipped, never fatal,
and never mistaken for a safe setting.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# -- Apache: where CGI may run (2005: awstats CGI; 2009: ExecCGI in every vhost) -----------------


@dataclass(frozen=True)
class CgiGrant:
    """A place in the Apache config that lets CGI run: which file, which line, for which directory."""

    file: str
    line: int
    directive: str
    directory: str | None  # None: the whole server or virtual host, or a <Location>

    def describe(self) -> str:
        where = f"for {self.directory}" if self.directory else "server-wide"
        return f"{self.file}:{self.line} {self.directive} {where}"


_SECTION = re.compile(r"^<\s*(/?)\s*([A-Za-z]+)\s*(.*?)\s*>\s*$")
_DIRECTORY_SECTIONS = {"directory", "directorymatch"}


def cgi_grants(files: Mapping[str, str], htaccess_dirs: Mapping[str, str] | None = None) -> list[CgiGrant]:
    """Every ``Options ExecCGI`` (or ``All``), ``cgi-script`` handler and ``ScriptAlias`` in ``files``.

    ``files`` maps a config file's path to its text; an ``.htaccess`` file's
    directory is the directory it sits in (``htaccess_dirs`` maps its path to that).
    """
    grants: list[CgiGrant] = []
    for path, text in files.items():
        base = (htaccess_dirs or {}).get(path)
        grants += _grants_in(path, text, base)
    return grants


def _grants_in(path: str, text: str, base: str | None) -> list[CgiGrant]:
    grants = []
    stack: list[str | None] = [base]
    for number, line in _logical_lines(text):
        section = _SECTION.match(line)
        if section:
            closing, name, argument = section.groups()
            if closing:
                stack = stack[:-1] if len(stack) > 1 else stack
            else:
                stack.append(_section_dir(name.lower(), argument, stack[-1]))
            continue
        grant = _grant(line, stack[-1])
        if grant:
            grants.append(CgiGrant(path, number, *grant))
    return grants


def _section_dir(name: str, argument: str, outer: str | None) -> str | None:
    """The directory a section applies to; other sections (If*, VirtualHost, Files) keep the outer one."""
    if name in _DIRECTORY_SECTIONS:
        return _unquote(argument)
    if name in ("location", "locationmatch"):
        return None
    return outer


def _grant(line: str, directory: str | None) -> tuple[str, str | None] | None:
    words = _words(line)
    if not words:
        return None
    name, args = words[0].lower(), [a.lower() for a in words[1:]]
    if name == "options" and any(a in ("execcgi", "+execcgi", "all", "+all") for a in args):
        return (" ".join(words), directory)
    if name in ("addhandler", "sethandler") and args and args[0] == "cgi-script":
        return (" ".join(words), directory)
    if name in ("scriptalias", "scriptaliasmatch") and len(words) >= 3:
        return (" ".join(words), _unquote(words[2]))
    return None


def cgi_outside(grants: Iterable[CgiGrant], allowed: Iterable[str]) -> list[CgiGrant]:
    """Grants for no directory or for one that is not (under) an allowed CGI directory."""
    roots = [_normal(d) for d in allowed]
    return [g for g in grants if g.directory is None or not _under(_normal(g.directory), roots)]


def _under(directory: str, roots: list[str]) -> bool:
    return any(directory == root or directory.startswith(root.rstrip("/") + "/") for root in roots)


def _normal(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else path


def document_roots(files: Mapping[str, str]) -> list[str]:
    """``DocumentRoot`` directories: where an ``.htaccess`` could turn CGI on."""
    roots = []
    for text in files.values():
        for _, line in _logical_lines(text):
            words = _words(line)
            if len(words) >= 2 and words[0].lower() == "documentroot" and words[1].startswith("/"):
                roots.append(_normal(words[1]))
    return sorted(set(roots))


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, line) with comments dropped and backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line and not line.startswith("#"):
            yield start, line
    if pending.strip():
        yield start, pending.strip()


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError:  # an unbalanced quote: read it word by word rather than not at all
        return line.split()


def _unquote(text: str) -> str:
    return text.strip().strip("\"'")


# -- authorized_keys: every key of an automation account pinned to a source and a command (2009) --

KEY_TYPES = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)"
                       r"@openssh\.com)(-cert-v01@openssh\.com)?$")


@dataclass(frozen=True)
class KeyLine:
    line: int
    options: dict[str, str | None]
    key_type: str
    key: str
    comment: str

    @property
    def restricted(self) -> bool:
        """Both a source (``from=``) and a forced command (``command=``), each non-empty."""
        return bool(self.options.get("from")) and bool(self.options.get("command"))


def authorized_keys(text: str) -> list[KeyLine]:
    """The key lines of an authorized_keys file; a line that is no key line is skipped."""
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _key_line(number, line)
        if parsed:
            keys.append(parsed)
    return keys


def _key_line(number: int, line: str) -> KeyLine | None:
    options: dict[str, str | None] = {}
    first = line.split(None, 1)[0]
    if not KEY_TYPES.match(first):
        options_text, line = _split_options(line)
        options = _options(options_text)
    fields = line.split(None, 2)
    if len(fields) < 2 or not KEY_TYPES.match(fields[0]):
        return None
    return KeyLine(number, options, fields[0], fields[1], fields[2] if len(fields) > 2 else "")


def _split_options(line: str) -> tuple[str, str]:
    """The options field ends at the first blank outside double quotes (sshd's own rule)."""
    quoted, index = False, 0
    while index < len(line):
        char = line[index]
        if char == "\\" and quoted and index + 1 < len(line):
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return line[:index], line[index:].strip()
        index += 1
    return line, ""


def _options(text: str) -> dict[str, str | None]:
    """``name`` or ``name="value"`` separated by commas outside quotes; names are case-insensitive."""
    options: dict[str, str | None] = {}
    for part in re.findall(r'(?:[^,"]|"(?:\\.|[^"\\])*")+', text):
        name, eq, value = part.partition("=")
        value = value[1:-1].replace('\\"', '"') if value.startswith('"') and value.endswith('"') else value
        options.setdefault(name.strip().lower(), value if eq else None)
    return options


def authorized_keys_paths(sshd_t: str, home: str, user: str) -> list[str]:
    """The files sshd reads for ``user``, from ``sshd -T``'s authorizedkeysfile (OpenSSH's default if absent)."""
    tokens = ".ssh/authorized_keys .ssh/authorized_keys2".split()
    for line in sshd_t.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].lower() == "authorizedkeysfile":
            tokens = words[1:]
    paths = []
    for token in tokens:
        if token.lower() == "none":
            continue
        path = token.replace("%h", home).replace("%u", user).replace("%%", "%")
        paths.append(path if path.startswith("/") else posixpath.join(home, path))
    return paths


# -- sshd: root logs in with keys only -------------------------------------------------------------

#: Values of PermitRootLogin that let a password (or keyboard-interactive) log root in.
ROOT_PASSWORD_VALUES = {"yes"}


def sshd_value(sshd_t: str, name: str) -> str | None:
    """One keyword's value in ``sshd -T`` output (lower-case keywords, one per line)."""
    for line in sshd_t.splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and words[0].lower() == name:
            return words[1].strip().lower()
    return None


def match_root_logins(files: Mapping[str, str]) -> list[str]:
    """``file:line Match …`` for every Match block that sets ``PermitRootLogin yes``.

    ``sshd -T`` shows the global setting only; a Match block can allow root
    with a password for some addresses or users, so those are read from the files.
    """
    found = []
    for path, text in files.items():
        match: tuple[int, str] | None = None
        for number, line in _logical_lines(text):
            words = line.split()
            keyword = words[0].lower()
            if keyword == "match":
                match = (number, line)
            elif match and keyword == "permitrootlogin" and len(words) > 1 and words[1].lower() in ROOT_PASSWORD_VALUES:
                found.append(f"{path}:{number} PermitRootLogin {words[1]} in '{match[1]}' ({path}:{match[0]})")
    return found


def first_root_login(files: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """(where, value) of the first global PermitRootLogin in sshd's reading order (the first one wins)."""
    for path, text in files:
        for number, line in _logical_lines(text):
            words = line.split()
            if words[0].lower() == "match":
                break
            if words[0].lower() == "permitrootlogin" and len(words) > 1:
                return f"{path}:{number}", words[1].lower()
    return None


# -- logs off the host (2009: logs destroyed, none kept elsewhere) --------------------------------


@dataclass(frozen=True)
class LogForward:
    file: str
    line: int
    daemon: str  # "rsyslog" | "syslog-ng" | "journal-upload"
    target: str


_RSYSLOG_LEGACY = re.compile(r"^\S+\s+(?:-?)(@@?)(?:\([^)]*\))?(\S+)")
_RSYSLOG_OMFWD = re.compile(r'type\s*=\s*"omfwd"', re.IGNORECASE)
_RSYSLOG_TARGET = re.compile(r'target\s*=\s*"([^"]+)"', re.IGNORECASE)
_SYSLOG_NG = re.compile(r'\b(network|tcp6?|udp6?|syslog)\s*\(\s*"?([A-Za-z0-9_.:\[\]-]+)"?')
_JOURNAL_URL = re.compile(r"^\s*URL\s*=\s*(\S+)", re.MULTILINE)


def log_forwards(files: Mapping[str, str]) -> list[LogForward]:
    """Remote targets in rsyslog (``*.* @@host:514``, ``action(type="omfwd" …)``), syslog-ng and journal-upload."""
    found: list[LogForward] = []
    for path, text in files.items():
        if "syslog-ng" in path:
            found += _syslog_ng(path, text)
        elif "journal-upload" in path:
            found += [LogForward(path, text[:m.start()].count("\n") + 1, "journal-upload", m.group(1))
                      for m in _JOURNAL_URL.finditer(text)]
        else:
            found += _rsyslog(path, text)
    return found


def _rsyslog(path: str, text: str) -> list[LogForward]:
    found = []
    for number, line in _logical_lines(_join_parens(text)):
        legacy = _RSYSLOG_LEGACY.match(line)
        if legacy and not line.lower().startswith(("module", "input", "$")):
            found.append(LogForward(path, number, "rsyslog", legacy.group(2)))
        elif _RSYSLOG_OMFWD.search(line) and (target := _RSYSLOG_TARGET.search(line)):
            found.append(LogForward(path, number, "rsyslog", target.group(1)))
    return found


def _join_parens(text: str) -> str:
    """rsyslog's ``action( … )`` may span lines: joined into one, keeping the line count."""
    out, depth = [], 0
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        out.append(line + (" \\" if depth + code.count("(") - code.count(")") > 0 else ""))
        depth = max(0, depth + code.count("(") - code.count(")"))
    return "\n".join(out)


def _syslog_ng(path: str, text: str) -> list[LogForward]:
    found = []
    for number, line in _logical_lines(text):
        if line.lstrip().startswith("destination"):
            found += [LogForward(path, number, "syslog-ng", m.group(2)) for m in _SYSLOG_NG.finditer(line)
                      if not m.group(2).startswith("/")]
    return found


# -- the snapshot schedule --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleLine:
    file: str
    line: int
    text: str
    active: bool  # False: the job is only named in a commented-out line


def schedule_lines(files: Mapping[str, str], jobs: Iterable[str]) -> list[ScheduleLine]:
    """Lines naming one of ``jobs`` in crontabs and in ``systemctl list-timers`` (its units);
    a commented-out line is kept, as inactive."""
    jobs = list(jobs)
    found = []
    for path, text in files.items():
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if any(job in line for job in jobs):
                found.append(ScheduleLine(path, number, line, active=not line.startswith("#")))
    return found
