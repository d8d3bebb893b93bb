"""Triage of ``zfs diff`` changes with the default web-server rules and playbook rules."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.zfs.diff import Change, ChangeKind, FileType, parse_diff
from recovery.zfs.triage import (
    DEFAULT_RULES,
    Rule,
    RuleError,
    Verdict,
    compares_older,
    classify,
    indicators,
    playbook_rules,
    triage,
)
from tests.support.zfs_output import diff_line


def verdict_of(change: str, ftype: str, path: bytes, mode: int | None = None, new: bytes | None = None) -> Verdict:
    (parsed,) = parse_diff(diff_line(change, ftype, path, new)).changes
    return classify(parsed, DEFAULT_RULES, mode).verdict


@pytest.mark.parametrize(
    ("change", "ftype", "path", "mode"),
    [
        ("+", "F", b"/srv/www/cgi-bin/awstats-helper.pl", None),
        ("M", "F", b"/usr/lib/cgi-bin/awstats.pl", None),
        ("+", "F", b"/var/www/html/uploads/shell.PHP", None),
        ("+", "F", b"/var/www/html/img/x.php.jpg", None),
        ("+", "F", b"/srv/www/site/.htaccess", None),
        ("+", "F", b"/srv/www/site/static/tool", 0o100755),
        ("+", "F", b"/etc/cron.d/sync", None),
        ("M", "F", b"/etc/crontab", None),
        ("+", "F", b"/var/spool/cron/crontabs/www-data", None),
        ("M", "F", b"/root/.ssh/authorized_keys", None),
        ("+", "F", b"/home/backup/.ssh/authorized_keys2", None),
        ("M", "F", b"/etc/ssh/sshd_config", None),
        ("M", "F", b"/etc/shadow", None),
        ("+", "F", b"/etc/passwd", None),
        ("+", "F", b"/usr/local/bin/telnetd", None),
        ("M", "F", b"/bin/ps", None),
        ("+", "F", b"/lib/x86_64-linux-gnu/libkeyutils.so.1.9", None),
        ("M", "F", b"/etc/ld.so.preload", None),
        ("M", "F", b"/etc/inetd.conf", None),
        ("+", "F", b"/tmp/.x/brute", 0o100700),
        ("+", "F", b"/opt/app/helper", 0o104755),
        ("+", "C", b"/srv/www/null", None),
    ],
)
def test_default_indicators(change: str, ftype: str, path: bytes, mode: int | None) -> None:
    assert verdict_of(change, ftype, path, mode) is Verdict.INDICATOR


@pytest.mark.parametrize(
    ("change", "ftype", "path", "mode", "verdict"),
    [
        ("M", "F", b"/var/log/apache2/access.log", None, Verdict.CHURN),
        ("+", "F", b"/var/log/syslog.1", None, Verdict.CHURN),
        ("+", "F", b"/var/cache/apt/pkgcache.bin", None, Verdict.CHURN),
        ("+", "F", b"/srv/www/site/cache/page.html", None, Verdict.CHURN),
        ("-", "F", b"/var/log/wtmp", None, Verdict.SUSPICIOUS),
        ("M", "F", b"/etc/hostname", None, Verdict.SUSPICIOUS),
        ("+", "F", b"/tmp/sess_abc", None, Verdict.SUSPICIOUS),
        ("+", "F", b"/opt/app/run", 0o100755, Verdict.SUSPICIOUS),
        ("+", "F", b"/srv/www/site/.secret", None, Verdict.SUSPICIOUS),
        ("+", "F", b"/srv/www/site/index.html", None, Verdict.BENIGN),
        ("+", "F", b"/srv/www/site/static/tool", None, Verdict.BENIGN),  # mode unknown
        ("-", "F", b"/srv/www/cgi-bin/old.pl", None, Verdict.BENIGN),
        ("M", "/", b"/srv/www/cgi-bin", None, Verdict.BENIGN),
    ],
)
def test_default_non_indicators(change: str, ftype: str, path: bytes, mode: int | None, verdict: Verdict) -> None:
    assert verdict_of(change, ftype, path, mode) is verdict


def test_rename_into_cgi_bin_is_judged_by_its_worse_end() -> None:
    assert verdict_of("R", "F", b"/srv/www/upload/a.txt", new=b"/srv/www/cgi-bin/a.cgi") is Verdict.INDICATOR
    assert verdict_of("R", "F", b"/usr/local/bin/nc", new=b"/srv/www/x") is Verdict.INDICATOR


def test_backdated_file_is_still_an_indicator() -> None:
    """``touch -d 2004-01-01`` (and even a clock set back) cannot hide a file from ``zfs diff``.

    The diff lists the object because its blocks are newer than the golden
    snapshot; triage ignores the (forged) times entirely.
    """
    backdated = diff_line("+", "F", b"/srv/www/cgi-bin/awstats.pl", ctime=(1072915200, 0))
    (change,) = parse_diff(backdated).changes
    assert change.ctime < 1100000000  # older than any golden snapshot of this fleet
    assert [f.path for f in indicators(triage([change]))] == [b"/srv/www/cgi-bin/awstats.pl"]


def test_hostile_names_do_not_escape_rules() -> None:
    assert verdict_of("+", "F", b"/srv/www/cgi-bin/a\nb") is Verdict.INDICATOR
    assert verdict_of("+", "F", b"/etc/cron.d/\xff\x1b[2J") is Verdict.INDICATOR


def test_modes_are_looked_up_by_current_path() -> None:
    (change,) = parse_diff(diff_line("+", "F", b"/tmp/x")).changes
    (finding,) = triage([change], modes={b"/tmp/x": 0o100755})
    assert finding.verdict is Verdict.INDICATOR and finding.rule == "temp-executable"


def test_playbook_rule_first_match_wins() -> None:
    deploy = Rule.from_mapping(
        {"name": "deploy", "verdict": "churn", "paths": ["/srv/www/app/releases/**"], "changes": ["+", "M"],
         "file_types": ["F"], "reason": "nightly deploy"}
    )
    (change,) = parse_diff(diff_line("+", "F", b"/srv/www/app/releases/42/index.php")).changes
    assert classify(change, (deploy, *DEFAULT_RULES)).verdict is Verdict.CHURN
    assert classify(change, DEFAULT_RULES).verdict is Verdict.INDICATOR


def test_playbook_rules_come_before_defaults_and_errors_name_the_index() -> None:
    tables = [{"name": "uploads", "verdict": "benign", "paths": ["/srv/www/uploads/*.jpg"]}]
    assert playbook_rules(tables)[0].name == "uploads" and len(playbook_rules(tables)) == len(DEFAULT_RULES) + 1
    assert len(playbook_rules(tables, defaults=False)) == 1
    with pytest.raises(RuleError, match=r"rules\[1\]: key 'verdict'"):
        playbook_rules([*tables, {"name": "x", "verdict": "fine", "paths": ["/"]}])


def test_rule_mode_from_octal_string() -> None:
    rule = Rule.from_mapping({"name": "suid", "verdict": "indicator", "paths": ["/**"], "mode_any": "0o4000"})
    assert rule.mode_any == 0o4000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "verdict": "bad", "paths": ["/"]}, "verdict"),
        ({"name": "x", "verdict": "churn"}, "paths"),
        ({"name": "x", "verdict": "churn", "paths": "/tmp/**"}, "paths"),
        ({"name": "x", "verdict": "churn", "paths": ["/"], "changes": ["X"]}, "changes"),
        ({"name": "x", "verdict": "churn", "paths": ["/"], "file_types": ["Q"]}, "file_types"),
        ({"name": "x", "verdict": "churn", "paths": ["/"], "mode_any": "9"}, "mode_any"),
        ({"name": "x", "verdict": "churn", "paths": ["/"], "colour": 1}, "colour"),
    ],
)
def test_bad_playbook_rules_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        Rule.from_mapping(data)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=30))
def test_anything_under_cgi_bin_is_an_indicator(name: bytes) -> None:
    name = name.replace(b"\0", b"_")
    assert verdict_of("+", "F", b"/srv/www/cgi-bin/" + name) is Verdict.INDICATOR


def test_triage_is_fast_enough_for_large_diffs() -> None:
    out = b"".join(diff_line("M", "F", b"/srv/www/site/page%d.html" % i) for i in range(20000))
    start = time.perf_counter()
    findings = triage(parse_diff(out).changes)
    assert len(findings) == 20000 and time.perf_counter() - start < 5


def test_a_diff_with_lines_that_do_not_parse_is_refused_whole() -> None:
    """Only a lying `zfs` prints such lines; a diff judged without them could hide an indicator."""
    from recovery.steps.zfs_host import triaged
    from recovery.zfs.client import AgentReplyError
    from recovery.zfs.diff import DiffResult, MalformedLine

    class LyingZfs:
        def altroot(self, pool: str) -> None:
            return None

        def get(self, datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
            return [{"name": datasets[0], "property": "mountpoint", "value": "/srv/www", "source": "local"}]

        def diff_changes(self, origin: str, target: str) -> DiffResult:
            return DiffResult(changes=(), malformed=(MalformedLine(3, "+\tF\t/srv/www/x.php", "no ctime"),),
                              malformed_count=7)

    with pytest.raises(AgentReplyError, match="7 lines do not parse .*line 3: no ctime.*refusing to triage"):
        triaged(LyingZfs(), "tank/www@golden-1", "tank/www@incident-1")  # type: ignore[arg-type]


def test_under_the_rescue_altroot_the_rules_see_the_paths_the_host_uses() -> None:
    from recovery.steps.zfs_host import as_host_sees_it, host_path

    added = Change(1, Decimal(0), ChangeKind.CREATED, FileType.FILE, b"/mnt/host/etc/cron.d/awstats")
    seen = as_host_sees_it(added, b"/mnt/host")
    assert seen.path == b"/etc/cron.d/awstats"
    assert triage([seen])[0].rule == "scheduled-jobs"
    assert host_path(b"/mnt/host", b"/mnt/host") == b"/"
    assert host_path(b"/mnt/hostile/x", b"/mnt/host") == b"/mnt/hostile/x"  # not below it: left alone


@pytest.mark.parametrize(("path", "rule"), [
    (b"/usr/sbin/telnetd", "system-binary"),
    (b"/usr/bin/python3", "system-binary"),
    (b"/etc/cron.d/awstats", "scheduled-jobs"),
    (b"/usr/lib/systemd/system/backdoor.timer", "scheduled-jobs"),
    (b"/usr/lib/modules/6.1.0-28-amd64/extra/rootkit.ko", "kernel-module"),
    (b"/etc/modules-load.d/rootkit.conf", "kernel-module"),
    (b"/usr/lib/x86_64-linux-gnu/security/pam_backdoor.so", "system-binary"),
    (b"/etc/ld.so.preload", "boot-persistence"),
    (b"/etc/pam.d/sshd", "boot-persistence"),
])
def test_system_changes_of_a_rootkit_are_indicators(path: bytes, rule: str) -> None:
    finding = triage([Change(1, Decimal(0), ChangeKind.CREATED, FileType.FILE, path)])[0]
    assert (finding.verdict.value, finding.rule) == ("indicator", rule)


def test_logs_and_service_state_of_a_running_system_are_churn() -> None:
    changes = [Change(1, Decimal(0), ChangeKind.MODIFIED, FileType.FILE, p)
               for p in (b"/var/log/syslog", b"/var/lib/systemd/random-seed", b"/var/cache/apt/pkgcache.bin")]
    assert {f.verdict.value for f in triage(changes)} == {"churn"}


def test_a_rewritten_log_is_an_indicator_and_an_appended_one_churn() -> None:
    """The 2005 intruder truncated the logs; rotation renames a log and starts a new one instead."""
    changes = [Change(1, Decimal(0), ChangeKind.MODIFIED, FileType.FILE, p)
               for p in (b"/var/log/wtmp", b"/var/log/apache2/access.log", b"/var/log/syslog",
                         b"/var/log/journal/x/system.journal")]
    findings = triage(changes, rewritten=[b"/var/log/wtmp", b"/var/log/apache2/access.log",
                                          b"/var/log/journal/x/system.journal"])
    assert [(f.verdict.value, f.rule) for f in findings] == [
        ("indicator", "log-rewritten"), ("indicator", "log-rewritten"), ("churn", "logs"),
        ("churn", "logs")]  # the journal rewrites its own files in place


def test_a_playbook_can_allow_a_log_that_is_cut_in_place() -> None:
    """copytruncate rotation cuts a log in place: the playbook says which logs may be."""
    allowed = Rule.from_mapping({"name": "app-copytruncate", "verdict": "churn", "paths": ["/var/log/app/*.log"],
                                 "rewritten": True})
    assert allowed.rewritten and not Rule.from_mapping({"name": "x", "verdict": "churn", "paths": ["/x"]}).rewritten
    changes = [Change(1, Decimal(0), ChangeKind.MODIFIED, FileType.FILE, p)
               for p in (b"/var/log/app/app.log", b"/var/log/wtmp")]
    findings = triage(changes, (allowed, *DEFAULT_RULES), rewritten=[c.path for c in changes])
    assert [f.rule for f in findings] == ["app-copytruncate", "log-rewritten"]


def test_only_modified_files_under_a_rewritten_rule_are_compared_with_their_older_state() -> None:
    def change(kind: ChangeKind, ftype: FileType, path: bytes) -> Change:
        return Change(1, Decimal(0), kind, ftype, path)

    assert compares_older(change(ChangeKind.MODIFIED, FileType.FILE, b"/var/log/wtmp"), DEFAULT_RULES)
    assert not compares_older(change(ChangeKind.CREATED, FileType.FILE, b"/var/log/wtmp"), DEFAULT_RULES)
    assert not compares_older(change(ChangeKind.MODIFIED, FileType.DIRECTORY, b"/var/log/apache2"), DEFAULT_RULES)
    assert not compares_older(change(ChangeKind.MODIFIED, FileType.FILE, b"/srv/www/index.html"), DEFAULT_RULES)


def test_rewritten_must_be_a_boolean() -> None:
    with pytest.raises(RuleError, match="key 'rewritten' must be bool"):
        Rule.from_mapping({"name": "x", "verdict": "churn", "paths": ["/x"], "rewritten": "yes"})


FAKE_POOL_TOOL = r'''#!{python}
"""Stand-in for zfs and zpool of a boot environment imported under an altroot (the rescue system)."""
import os, sys
args, root = sys.argv[1:], {root!r}
if os.path.basename(sys.argv[0]) == "zpool":
    sys.stdout.write("bootfs\trpool/ROOT/debian\naltroot\t%s\nhealth\tONLINE\n" % root)
elif args[0] == "get":
    sys.stdout.write("rpool/ROOT/debian\tmountpoint\t%s\tlocal\n" % root)
elif args[0] == "diff":
    sys.stdout.buffer.write({diff!r})
else:
    sys.exit("unexpected: %r" % args)
'''


def test_triaged_reads_modes_and_logs_inside_the_snapshots_through_the_real_agent(tmp_path: Path) -> None:
    """Under the rescue altroot, on files laid out as ``.zfs/snapshot/<name>`` shows them: a set-uid
    program is judged by its mode in the snapshot, wtmp cut and grown again is rewritten, syslog only
    grew, and every path is the one the host uses."""
    from recovery.steps.zfs_host import triaged
    from recovery.zfs.client import AgentClient
    from tests.unit.test_zfs_client import LocalShell

    root = tmp_path / "mnt-host"
    files = {"golden-1": {"var/log/wtmp": b"boot boot boot ", "var/log/syslog": b"a\n"},
             "incident-1": {"var/log/wtmp": b"login ", "var/log/syslog": b"a\nb\n", "opt/tool": b"#!/bin/sh\n"}}
    for snapshot, contents in files.items():
        for name, data in contents.items():
            path = root / ".zfs/snapshot" / snapshot / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (root / ".zfs/snapshot/incident-1/opt/tool").chmod(0o4755)
    diff = b"".join(diff_line(c, "F", str(root).encode() + p) for c, p in (
        ("M", b"/var/log/wtmp"), ("M", b"/var/log/syslog"), ("+", b"/opt/tool")))
    for tool in ("zfs", "zpool"):
        (tmp_path / tool).write_text(FAKE_POOL_TOOL.format(python=sys.executable, root=str(root), diff=diff))
        (tmp_path / tool).chmod(0o755)
    client = AgentClient(LocalShell(noise=True), python=sys.executable, zfs=str(tmp_path / "zfs"))
    findings = triaged(client, "rpool/ROOT/debian@golden-1", "rpool/ROOT/debian@incident-1")
    assert [(f.path, f.rule) for f in findings] == [
        (b"/var/log/wtmp", "log-rewritten"), (b"/var/log/syslog", "logs"), (b"/opt/tool", "setuid-file")]


def test_a_diff_of_the_same_two_snapshots_is_triaged_once_per_process() -> None:
    """`find_clean` reuses what `diff` triaged; a snapshot destroyed and taken again under its name
    (another guid), another host or channel, or other rules are asked afresh."""
    from recovery.steps.zfs_host import SnapshotsOf, triaged
    from recovery.zfs.diff import DiffResult

    class CountingZfs:
        def __init__(self) -> None:
            self.diffs = 0

        def altroot(self, pool: str) -> None:
            return None

        def get(self, datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
            return [{"name": datasets[0], "property": "mountpoint", "value": "none", "source": "local"}]

        def diff_changes(self, origin: str, target: str) -> DiffResult:
            self.diffs += 1
            added = Change(1, Decimal(0), ChangeKind.CREATED, FileType.FILE, b"/etc/cron.d/x")
            return DiffResult(changes=(added,), malformed=(), malformed_count=0)

    zfs = CountingZfs()
    golden, incident = "tank/www@golden-1", "tank/www@incident-1"
    known = SnapshotsOf("eu-web over rescue", {golden: 11, incident: 12})

    def asked(known: SnapshotsOf | None, rules: object = None) -> int:
        before = zfs.diffs
        findings = triaged(zfs, golden, incident, rules, known)  # type: ignore[arg-type]
        assert [f.rule for f in findings] == ["scheduled-jobs"] or rules is not None
        return zfs.diffs - before

    assert asked(known) == 1
    assert asked(known) == 0
    assert asked(SnapshotsOf("eu-web over rescue", {golden: 11, incident: 13})) == 1  # another snapshot, same name
    assert asked(SnapshotsOf("us-web over rescue", {golden: 11, incident: 12})) == 1
    assert asked(SnapshotsOf("eu-web over console", {golden: 11, incident: 12})) == 1  # the host's own tools
    assert asked(known, rules=()) == 1
    assert asked(None) == 1 and asked(None) == 1  # nothing known of the snapshots: never reused


def test_the_mountpoint_a_step_listed_is_not_asked_again() -> None:
    """The step's ``zfs list`` shows each filesystem's mountpoint: triage takes it from there (a
    ``zfs get`` is a process on a slow guest); a dataset the listing does not hold is asked."""
    from recovery.steps.zfs_host import DatasetTriage, SnapshotsOf

    class AskedZfs:
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        def altroot(self, pool: str) -> str:
            return "/mnt/host"

        def get(self, datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
            self.asked.append(datasets)
            return [{"name": datasets[0], "property": "mountpoint", "value": "/mnt/host/home", "source": "local"}]

    zfs = AskedZfs()
    known = SnapshotsOf("eu-web over rescue", {}, {"tank/www": "/mnt/host/srv/www", "tank/off": "none"})
    assert DatasetTriage.of(zfs, "tank/www", None, known).mountpoint == b"/mnt/host/srv/www"  # type: ignore[arg-type]
    assert DatasetTriage.of(zfs, "tank/off", None, known).mountpoint is None  # type: ignore[arg-type]
    assert zfs.asked == []
    assert DatasetTriage.of(zfs, "tank/home", None, known).mountpoint == b"/mnt/host/home"  # type: ignore[arg-type]
    assert zfs.asked == [["tank/home"]]


def test_a_diff_asked_while_it_is_being_made_is_waited_for_and_a_failed_one_is_asked_again() -> None:
    """`find_clean` triages what restoring gives up ahead, beside its last round: who asks for the
    same diff meanwhile waits for that one (one ``zfs diff``); a diff that failed is not kept."""
    import threading

    from recovery.steps.zfs_host import DatasetTriage, SnapshotsOf
    from recovery.zfs.client import AgentReplyError
    from recovery.zfs.diff import DiffResult

    class SlowZfs:
        """A diff that runs until the test lets it end (a timer, started once the diff is running)."""

        def __init__(self, failing: bool) -> None:
            self.diffs, self.failing, self.running = 0, failing, threading.Event()

        def diff_changes(self, origin: str, target: str) -> DiffResult:
            self.diffs += 1
            self.running.set()
            time.sleep(0.5)
            if self.failing:
                raise AgentReplyError("eu-web: diff: the channel closed")
            added = Change(1, Decimal(0), ChangeKind.CREATED, FileType.FILE, b"/etc/cron.d/x")
            return DiffResult(changes=(added,), malformed=(), malformed_count=0)

    known = SnapshotsOf("eu-web over rescue", {"tank/www@auto-3": 31, "tank/www@incident-7": 32})
    pair = ("tank/www@auto-3", "tank/www@incident-7")
    zfs = SlowZfs(failing=True)
    diffs = DatasetTriage(zfs, DEFAULT_RULES, None, b"", known)  # type: ignore[arg-type]
    ahead = diffs.ahead(*pair)
    assert ahead is not None and zfs.running.wait(5)
    with pytest.raises(AgentReplyError, match="channel closed"):
        diffs.between(*pair)  # asked while the one ahead runs: its failure, shared
    ahead.join(5)
    assert zfs.diffs == 1
    zfs.failing, zfs.running = False, threading.Event()
    ahead = diffs.ahead(*pair)  # the failure was not kept: asked again
    assert ahead is not None and zfs.running.wait(5)
    assert [f.rule for f in diffs.between(*pair)] == ["scheduled-jobs"]
    ahead.join(5)
    assert [f.rule for f in diffs.between(*pair)] == ["scheduled-jobs"]
    assert zfs.diffs == 2  # one ``zfs diff`` for the three asks after the failure
    assert DatasetTriage(zfs, DEFAULT_RULES, None, b"", None).ahead(*pair) is None  # not known by guid


def test_verify_judges_by_the_snapshot_only_what_holds_its_files() -> None:
    """A restored dataset holds its clean snapshot's files: `verify` diffs golden to that snapshot
    (maybe triaged already). Nothing written since says so at once; blocks written since (a clone's own
    bookkeeping) are asked with a diff from that snapshot, and one change, or one line that does not
    parse, sends the dataset to the live diff from golden."""
    from recovery.steps.verify import as_snapshotted
    from recovery.steps.zfs_host import Listing
    from recovery.zfs.client import Dataset
    from recovery.zfs.diff import DiffResult, MalformedLine

    def snapshot(name: str, txg: int) -> Dataset:
        return Dataset(name, "snapshot", txg, txg, 0, 0, None, None)

    listing = Listing((snapshot("tank/www@golden-1", 1), snapshot("tank/www@auto-2", 2),
                       snapshot("tank/home@golden-1", 3), snapshot("tank/home@incident-R", 4),
                       snapshot("tank/logs@golden-1", 5), snapshot("tank/cgi@auto-4", 6),
                       snapshot("tank/db@auto-4", 7)))
    changed = Change(1, Decimal(0), ChangeKind.MODIFIED, FileType.FILE, b"/srv/home/x")
    odd = MalformedLine(1, "??", "not a zfs diff line")

    class Written:
        def __init__(self) -> None:
            self.diffs: list[tuple[str, str]] = []

        def get(self, datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
            assert properties == ["written"]
            values = {"tank/www": "0", "tank/home": "512", "tank/logs": "0", "tank/cgi": "8192", "tank/db": "8192"}
            return [{"name": d, "property": "written", "value": values[d], "source": "-"} for d in datasets]

        def diff_changes(self, origin: str, target: str) -> DiffResult:
            self.diffs.append((origin, target))
            if target == "tank/home":
                return DiffResult(changes=(changed,), malformed=(), malformed_count=0)
            if target == "tank/db":
                return DiffResult(changes=(), malformed=(odd,), malformed_count=1)
            return DiffResult(changes=(), malformed=(), malformed_count=0)

    zfs = Written()
    held = as_snapshotted(zfs, listing, ["tank/www", "tank/home", "tank/logs", "tank/none", "tank/cgi", "tank/db"])  # type: ignore[arg-type]
    assert held == {"tank/www": "tank/www@auto-2", "tank/logs": "tank/logs@golden-1", "tank/cgi": "tank/cgi@auto-4"}
    assert sorted(zfs.diffs) == [("tank/cgi@auto-4", "tank/cgi"), ("tank/db@auto-4", "tank/db"),
                                 ("tank/home@incident-R", "tank/home")]  # nothing written: not asked


def test_a_file_unlinked_while_open_is_reported_suspicious_and_never_taken_for_a_path() -> None:
    """A host powered off by force leaves files on the delete queue (a log a daemon had open); the
    rescue system's read-only mount keeps them, and ``zfs diff`` names each ``<mountpoint>(on_delete_queue)``.
    It is triaged without a path (no mode, no snapshot view), shown for a person, never an indicator;
    a file that is really named so, under the mountpoint, is triaged like any other."""
    from recovery.steps.zfs_host import DatasetTriage
    from recovery.zfs.client import AgentReplyError
    from recovery.zfs.diff import DiffResult

    queued = Change(1, Decimal(0), ChangeKind.MODIFIED, FileType.FILE, b"/mnt/host(on_delete_queue)")
    named = Change(2, Decimal(0), ChangeKind.CREATED, FileType.FILE, b"/mnt/host/etc/cron.d/(on_delete_queue)")

    class Rescue:
        def __init__(self) -> None:
            self.asked: list[bytes] = []

        def diff_changes(self, origin: str, target: str) -> DiffResult:
            return DiffResult(changes=(queued, named), malformed=(), malformed_count=0)

        def modes_in_snapshot(self, mountpoint: bytes, snapshot: str, paths: list[bytes]) -> dict[bytes, int]:
            self.asked += paths
            return {p: 0o100644 for p in paths}

        def appended(self, pairs: list[tuple[bytes, bytes]]) -> list[bool | None]:
            self.asked += [older for older, _ in pairs]
            return [None for _ in pairs]

        def shipped(self, root: bytes, paths: list[bytes]) -> dict[bytes, bool]:
            return {}

    host = Rescue()
    findings = DatasetTriage(host, DEFAULT_RULES, b"/mnt/host", b"/mnt/host").between(  # type: ignore[arg-type]
        "rpool/ROOT/debian@golden-1", "rpool/ROOT/debian@incident-R")
    by_path = {f.path: f for f in findings}
    assert by_path[b"/mnt/host(on_delete_queue)"].verdict is Verdict.SUSPICIOUS
    assert by_path[b"/mnt/host(on_delete_queue)"].rule == "unlinked-open"
    assert by_path[b"/etc/cron.d/(on_delete_queue)"].verdict is Verdict.INDICATOR
    assert b"/mnt/host(on_delete_queue)" not in host.asked
    live = DatasetTriage(host, DEFAULT_RULES, b"/mnt/host", b"/mnt/host")  # type: ignore[arg-type]
    with pytest.raises(AgentReplyError, match="still held open by a running process"):
        live.between("rpool/ROOT/debian@golden-1", "rpool/ROOT/debian")  # a sweep's live look
