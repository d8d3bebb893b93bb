"""Classify ``zfs diff`` changes as indicators of compromise, suspicious, churn or benign.

Rules are plain data so a playbook can carry them (``Rule.from_mapping`` takes
one TOML table). They are tried in order and the first rule that matches
decides, like a firewall: put specific exceptions before broad rules. A
change no rule matches is benign.

Classification never looks at times. Attackers backdate mtimes (``touch -d``)
and may even turn the clock back, but ``zfs diff`` lists an object because
its blocks were born after the older snapshot, whatever its timestamps say;
trusting the path, change and file type keeps that guarantee.

Paths are mountpoint-absolute (``/srv/www/cgi-bin/x.cgi``), as ``zfs diff``
prints them. Mode bits are optional knowledge (``zfs diff`` does not print
them; the host agent can stat the newer state): a rule with ``mode_any``
matches only when the mode is known. Symlink targets are optional knowledge
too, and a rule with ``link_outside`` fails closed: it matches a symlink whose
target is unknown, or resolves outside the given directory. A rule with
``rewritten`` matches a modified file that does not start with what it held in
the older state: a log only grows at its end, and rotation renames it rather
than cutting it, so a log truncated, shrunk or edited in place is one somebody
covered tracks in (the 2005 intruder truncated them), even if it grew again.
"""

from __future__ import annotations

import base64
import enum
import posixpath
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recovery.zfs.diff import Change, ChangeKind, FileType


class Verdict(enum.Enum):
    """How much a change matters to the recovery, most serious first."""

    INDICATOR = "indicator"  # the snapshot holding it is not clean
    SUSPICIOUS = "suspicious"  # reported for a person to judge; does not block a restore
    BENIGN = "benign"  # nothing notable
    CHURN = "churn"  # expected movement: logs, caches

    @property
    def severity(self) -> int:
        return list(Verdict)[::-1].index(self)


ALL_KINDS = frozenset(ChangeKind)
WRITES = frozenset({ChangeKind.CREATED, ChangeKind.MODIFIED, ChangeKind.RENAMED})
_RULE_KEYS = {"name", "verdict", "paths", "changes", "file_types", "mode_any", "ignore_case", "reason",
              "link_outside", "rewritten"}


class RuleError(ValueError):
    """A triage rule from a playbook is not valid; the message names the key."""


@dataclass(frozen=True)
class Rule:
    """One triage rule: which paths, change kinds, file types and mode bits it covers."""

    name: str
    verdict: Verdict
    paths: tuple[str, ...]
    changes: frozenset[ChangeKind] = ALL_KINDS
    file_types: frozenset[FileType] | None = None
    mode_any: int = 0
    ignore_case: bool = False
    reason: str = ""
    link_outside: str | None = None  # only symlinks whose target is unknown or outside this directory
    rewritten: bool = False  # only files known not to start with their older content
    _pattern: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.paths:
            raise RuleError(f"rule {self.name!r} has no paths")
        if self.link_outside is not None and not self.link_outside.startswith("/"):
            raise RuleError(f"rule {self.name!r}: link_outside must be an absolute directory")
        object.__setattr__(self, "_pattern", _compile(self.paths, self.ignore_case))

    def matches(self, change: Change, path: bytes, mode: int | None, link: bytes | None = None,
                rewritten: bool = False) -> bool:
        """Whether the rule covers ``path`` (one end of ``change``) with that mode and symlink target, and
        ``rewritten`` (the file is known not to start with its older content)."""
        if self.rewritten and not rewritten:
            return False
        if change.kind not in self.changes:
            return False
        if self.file_types is not None and change.file_type not in self.file_types:
            return False
        if self.mode_any and (mode is None or not mode & self.mode_any):
            return False
        if self.link_outside is not None and not _link_escapes(change, path, link, self.link_outside):
            return False
        return self.covers(path)

    def covers(self, path: bytes) -> bool:
        """Whether ``path`` is one of the rule's paths (the other conditions aside)."""
        return self._pattern.fullmatch(path) is not None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Rule:
        """Build a rule from a playbook table; errors name the offending key."""
        unknown = set(data) - _RULE_KEYS
        if unknown:
            raise RuleError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
        for key in ("name", "verdict", "paths"):
            if key not in data:
                raise RuleError(f"missing key '{key}'")
        return cls(
            name=_typed(data, "name", str),
            verdict=_enum(Verdict, data["verdict"], "verdict"),
            paths=tuple(_strings(data, "paths")),
            changes=frozenset(_enum(ChangeKind, c, "changes") for c in _strings(data, "changes", ["-", "+", "M", "R"])),
            file_types=_file_types(data),
            mode_any=_mode(data.get("mode_any", 0)),
            ignore_case=_typed(data, "ignore_case", bool, False),
            reason=_typed(data, "reason", str, ""),
            link_outside=_typed(data, "link_outside", str) if "link_outside" in data else None,
            rewritten=_typed(data, "rewritten", bool, False),
        )


@dataclass(frozen=True)
class Finding:
    """A change with the verdict, and the rule that gave it."""

    change: Change
    verdict: Verdict
    rule: str | None
    reason: str

    @property
    def path(self) -> bytes:
        """The path that identifies the finding across snapshots (new name after a rename)."""
        return self.change.current_path

    @property
    def path_b64(self) -> str:
        """The exact bytes of :attr:`path` as base64: what a journal keeps to match paths later.

        The display form is escaped and may be cut, so two different names can
        look alike in it; this form is exact and safe in JSON.
        """
        return base64.b64encode(self.path).decode("ascii")


def playbook_rules(tables: Iterable[Mapping[str, Any]], defaults: bool = True) -> tuple[Rule, ...]:
    """A playbook's rules first (so they can carve exceptions), then the defaults unless turned off."""
    rules = []
    for index, table in enumerate(tables):
        try:
            rules.append(Rule.from_mapping(table))
        except RuleError as exc:
            raise RuleError(f"rules[{index}]: {exc}") from None
    return (*rules, *DEFAULT_RULES) if defaults else tuple(rules)


def classify(change: Change, rules: Iterable[Rule], mode: int | None = None, link: bytes | None = None,
             rewritten: bool = False) -> Finding:
    """The first matching rule's verdict; a rename is judged by its worse end."""
    rules = tuple(rules)
    candidates = [_first_match(change, change.path, mode, link, rewritten, rules)]
    if change.new_path is not None:
        candidates.append(_first_match(change, change.new_path, mode, link, rewritten, rules))
    return max(candidates, key=lambda finding: finding.verdict.severity)


def triage(
    changes: Iterable[Change],
    rules: Iterable[Rule] | None = None,
    modes: Mapping[bytes, int] | None = None,
    links: Mapping[bytes, bytes] | None = None,
    rewritten: Collection[bytes] = (),
) -> list[Finding]:
    """Classify every change; ``modes`` and ``links`` map a change's current path to its st_mode
    and symlink target (as ``readlink`` gives it) in the newer state, ``rewritten`` holds the paths
    of modified files that do not start with what they held in the older state."""
    rules = DEFAULT_RULES if rules is None else tuple(rules)
    modes, links, rewritten = modes or {}, links or {}, frozenset(rewritten)
    return [classify(c, rules, modes.get(c.current_path), links.get(c.current_path), c.current_path in rewritten)
            for c in changes]


def compares_older(change: Change, rules: Iterable[Rule]) -> bool:
    """Whether a ``rewritten`` rule could judge ``change``: only then is its older content worth comparing."""
    return (change.kind is ChangeKind.MODIFIED and change.file_type is FileType.FILE
            and any(r.rewritten and r.covers(change.path) for r in rules))


def indicators(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict is Verdict.INDICATOR]


def _first_match(change: Change, path: bytes, mode: int | None, link: bytes | None, rewritten: bool,
                 rules: tuple[Rule, ...]) -> Finding:
    for rule in rules:
        if rule.matches(change, path, mode, link, rewritten):
            return Finding(change, rule.verdict, rule.name, rule.reason)
    return Finding(change, Verdict.BENIGN, None, "no rule matched")


def _link_escapes(change: Change, path: bytes, link: bytes | None, root: str) -> bool:
    """Whether a symlink at ``path`` may lead outside ``root``: yes when its target is unknown.

    The target is resolved lexically ('..' folded); a target through another
    symlink could still escape, which the rules on that other link judge.
    """
    if change.file_type is not FileType.SYMLINK:
        return False
    if link is None:
        return True
    top = root.rstrip("/").encode("utf-8", errors="surrogateescape")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
    return resolved != top and not resolved.startswith(top + b"/")


def _compile(globs: tuple[str, ...], ignore_case: bool) -> re.Pattern[bytes]:
    """Globs over bytes paths: ``**`` spans directories, ``*`` and ``?`` stay in one."""
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(b"|".join(b"(?:" + _glob_to_regex(g) + b")" for g in globs), flags)


_GLOB_TOKENS = re.compile(r"/\*\*/|/\*\*$|\*\*|\*|\?|\[!?\]?[^\]]*\]|[^*?\[/]+|/|\[")


def _glob_to_regex(glob: str) -> bytes:
    out = []
    for token in _GLOB_TOKENS.findall(glob):
        out.append(_GLOB_MEANING.get(token) or _glob_class(token) or re.escape(token))
    return "".join(out).encode("utf-8", errors="surrogateescape")


_GLOB_MEANING = {"/**/": "/(?:.*/)?", "/**": "(?:/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


def _glob_class(token: str) -> str | None:
    if len(token) < 3 or not token.startswith("[") or not token.endswith("]"):
        return None
    body = token[1:-1]
    negate = body.startswith("!")
    body = body[1:] if negate else body
    return "[" + ("^/" if negate else "") + body.replace("\\", "\\\\").replace("^", "\\^") + "]"


def _typed(data: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise RuleError(f"key '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(data: Mapping[str, Any], key: str, default: list[str] | None = None) -> list[str]:
    value = data.get(key, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"key '{key}' must be a list of strings")
    if not value:
        raise RuleError(f"key '{key}' must not be empty")
    return list(value)


def _enum(kind: type[enum.Enum], value: Any, key: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in kind)
        raise RuleError(f"key '{key}': {value!r} is not one of {allowed}") from None


def _file_types(data: Mapping[str, Any]) -> frozenset[FileType] | None:
    if "file_types" not in data:
        return None
    return frozenset(_enum(FileType, t, "file_types") for t in _strings(data, "file_types"))


def _mode(value: Any) -> int:
    """Mode bits as an int or an octal string (``"4000"`` / ``"0o4000"``), as TOML allows both."""
    if isinstance(value, str):
        try:
            value = int(value.removeprefix("0o"), 8)
        except ValueError:
            raise RuleError(f"key 'mode_any': {value!r} is not octal") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o7777:
        raise RuleError("key 'mode_any' must be permission bits between 0 and 0o7777")
    return value


# --- default rules for web servers and their systems ------------------------

WEB_ROOTS = ("/srv/www", "/var/www", "/srv/http")
#: What a web server may run or obey in a web root: PHP in all its extensions (and "x.php.jpg", which
#: some handlers still run), server-side includes, JSP, ASP, CGI scripts, and per-directory configuration.
SCRIPT_NAMES = ("*.php*", "*.phtml", "*.pht", "*.phar", "*.shtml", "*.jsp", "*.jspx", "*.asp", "*.aspx", "*.cgi",
                "*.pl", "*.py", "*.sh", "*.rb", "*.lua", ".htaccess", ".user.ini")
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
#: Logs written only at their end (the journal's files and lastlog are rewritten in place, so not these).
APPEND_ONLY_LOGS = ("/var/log/wtmp", "/var/log/btmp", "/var/log/**/*.log", "/var/log/**/*_log", "/var/log/syslog",
                    "/var/log/messages", "/var/log/secure", "/var/log/maillog")
FILES_AND_LINKS = frozenset({FileType.FILE, FileType.SYMLINK})
EXECUTE_BITS = 0o111


def _under(roots: Iterable[str], *names: str) -> tuple[str, ...]:
    return tuple(f"{root}/**/{name}" for root in roots for name in names)


def _rule(name: str, verdict: Verdict, paths: Iterable[str], reason: str, **options: Any) -> Rule:
    return Rule(name=name, verdict=verdict, paths=tuple(paths), reason=reason, **options)


_I, _S, _C = Verdict.INDICATOR, Verdict.SUSPICIOUS, Verdict.CHURN

DEFAULT_RULES: tuple[Rule, ...] = (
    _rule("setuid-file", _I, ["/**"], "setuid/setgid file written", changes=WRITES,
          file_types=frozenset({FileType.FILE}), mode_any=0o6000),
    _rule("device-node", _I, ["/**"], "device node on a data set", changes=WRITES,
          file_types=frozenset({FileType.BLOCK_DEVICE, FileType.CHAR_DEVICE})),
    _rule("ssh-keys", _I, ["/root/.ssh/**", "/home/*/.ssh/**", "/**/.ssh/authorized_keys*"],
          "SSH keys or config of an account changed", changes=WRITES),
    _rule("sshd-config", _I, ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/**"],
          "SSH daemon configuration changed", changes=WRITES),
    _rule("accounts", _I, ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow",
                           "/etc/sudoers", "/etc/sudoers.d/**"],
          "accounts or privileges changed", changes=WRITES),
    _rule("scheduled-jobs", _I, ["/etc/crontab", "/etc/anacrontab", "/etc/cron*/**", "/var/spool/cron/**",
                                 "/etc/systemd/system/**", "/etc/systemd/user/**", "/usr/lib/systemd/system/**",
                                 "/lib/systemd/system/**", "/usr/lib/systemd/user/**", "/run/systemd/system/**"],
          "scheduled job, service unit or timer added or changed", changes=WRITES),
    _rule("kernel-module", _I, ["/lib/modules/**", "/usr/lib/modules/**", "/**/*.ko", "/**/*.ko.*",
                                "/etc/modules", "/etc/modules-load.d/**", "/etc/modprobe.d/**"],
          "kernel module or module loading changed", changes=WRITES),
    _rule("boot-persistence", _I, ["/etc/rc.local", "/etc/init.d/**", "/etc/rc?.d/**", "/etc/inetd.conf",
                                   "/etc/xinetd.conf", "/etc/xinetd.d/**", "/etc/ld.so.preload",
                                   "/etc/ld.so.conf", "/etc/ld.so.conf.d/**", "/etc/pam.d/**",
                                   "/etc/profile", "/etc/profile.d/**", "/etc/bash.bashrc",
                                   "/root/.bashrc", "/root/.profile"],
          "start-up, login or loader configuration changed", changes=WRITES),
    _rule("cgi-bin", _I, ["/**/cgi-bin/**"], "script written in a cgi-bin", changes=WRITES,
          file_types=FILES_AND_LINKS),
    _rule("web-script", _I, _under(WEB_ROOTS, *SCRIPT_NAMES), "script or handler config written in a web root",
          changes=WRITES, file_types=FILES_AND_LINKS, ignore_case=True),
    *(_rule("web-symlink-out", _I, [f"{root}/**"], "symlink in a web root leading outside it (or to an "
             "unknown target)", changes=WRITES, file_types=frozenset({FileType.SYMLINK}), link_outside=root)
      for root in WEB_ROOTS),
    _rule("web-executable", _I, [f"{root}/**" for root in WEB_ROOTS], "executable written in a web root",
          changes=WRITES, file_types=frozenset({FileType.FILE}), mode_any=EXECUTE_BITS),
    _rule("system-binary", _I, ["/usr/local/bin/**", "/usr/local/sbin/**", "/usr/bin/**", "/usr/sbin/**",
                                "/bin/**", "/sbin/**", "/usr/local/lib/**", "/lib/**/*.so*", "/lib64/**",
                                "/usr/lib/**/*.so*", "/usr/lib*/security/**", "/lib/*/security/**"],
          "program or library written after the golden image", changes=WRITES, file_types=FILES_AND_LINKS),
    _rule("temp-executable", _I, [f"{root}/**" for root in TEMP_DIRS], "executable in a temporary directory",
          changes=WRITES, file_types=frozenset({FileType.FILE}), mode_any=EXECUTE_BITS),
    _rule("log-rewritten", _I, APPEND_ONLY_LOGS, "log truncated, shrunk or edited in place (a log only grows "
          "at its end, and rotation renames it): somebody covered tracks", changes=frozenset({ChangeKind.MODIFIED}),
          file_types=frozenset({FileType.FILE}), rewritten=True),
    _rule("log-removed", _S, ["/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/var/log/auth.log*",
                              "/var/log/syslog*", "/var/log/messages*", "/var/log/secure*"],
          "login or system log removed", changes=frozenset({ChangeKind.REMOVED})),
    _rule("temp-file", _S, [f"{root}/**" for root in TEMP_DIRS], "file in a temporary directory",
          changes=WRITES, file_types=frozenset({FileType.FILE})),
    _rule("hidden-name", _S, ["/**/.*", "/**/.*/**"], "hidden file or directory", changes=WRITES),
    _rule("packages", _S, ["/var/lib/dpkg/**"], "package database changed: software was installed"),
    _rule("etc", _S, ["/etc/**"], "system configuration changed"),
    _rule("executable", _S, ["/**"], "executable file written", changes=WRITES,
          file_types=frozenset({FileType.FILE}), mode_any=EXECUTE_BITS),
    _rule("logs", _C, ["/var/log/**"], "log files grow and rotate"),
    _rule("caches", _C, ["/var/cache/**", "/**/cache/**", "/var/lib/php/sessions/**", "/var/lib/systemd/**",
                         "/var/lib/logrotate/**"], "caches and service state"),
)
