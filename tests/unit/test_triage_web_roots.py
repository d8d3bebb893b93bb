"""Default triage in web roots: every handler extension, per-directory config, escaping symlinks, executables."""

from __future__ import annotations

import base64

import pytest

from recovery.zfs.diff import parse_diff
from recovery.zfs.triage import DEFAULT_RULES, Rule, RuleError, Verdict, classify, playbook_rules, triage
from tests.support.zfs_output import diff_line

HANDLERS = [".php", ".php3", ".php4", ".php5", ".php7", ".php8", ".phtml", ".pht", ".phar", ".shtml", ".jsp",
            ".jspx", ".asp", ".aspx", ".cgi", ".pl", ".py", ".sh"]


def finding(change: str, ftype: str, path: bytes, mode: int | None = None, link: bytes | None = None,
            rules: tuple[Rule, ...] = DEFAULT_RULES):
    (parsed,) = parse_diff(diff_line(change, ftype, path)).changes
    return classify(parsed, rules, mode, link)


@pytest.mark.parametrize("root", [b"/srv/www", b"/var/www", b"/srv/http"])
@pytest.mark.parametrize("name", [b"site/up/shell" + ext.encode() for ext in HANDLERS]
                         + [b"site/up/SHELL.PHTML", b".htaccess", b"site/.user.ini", b"site/a/b/.htaccess"])
def test_handlers_and_directory_config_in_web_roots_are_indicators(root: bytes, name: bytes) -> None:
    assert finding("+", "F", root + b"/" + name).verdict is Verdict.INDICATOR
    assert finding("M", "F", root + b"/" + name).verdict is Verdict.INDICATOR


@pytest.mark.parametrize("target", [b"/etc/shadow", b"../../../etc", b"/", b"/srv/wwwx/y", b"../../www2"])
def test_symlink_leading_out_of_the_web_root_is_an_indicator(target: bytes) -> None:
    found = finding("+", "@", b"/srv/www/site/img", link=target)
    assert found.verdict is Verdict.INDICATOR and found.rule == "web-symlink-out"


def test_symlink_with_an_unknown_target_fails_closed() -> None:
    assert finding("+", "@", b"/srv/www/site/current").verdict is Verdict.INDICATOR


@pytest.mark.parametrize("target", [b"releases/42", b"/srv/www/site/static", b"../shared/../site/x", b"."])
def test_symlink_staying_inside_the_web_root_is_not_an_indicator(target: bytes) -> None:
    assert finding("+", "@", b"/srv/www/site/current", link=target).verdict is Verdict.BENIGN


def test_links_are_looked_up_by_current_path() -> None:
    (change,) = parse_diff(diff_line("+", "@", b"/var/www/html/x")).changes
    assert triage([change], links={b"/var/www/html/x": b"html2"})[0].verdict is Verdict.BENIGN
    assert triage([change], links={b"/var/www/html/x": b"/root"})[0].verdict is Verdict.INDICATOR


@pytest.mark.parametrize("mode", [0o100755, 0o100700, 0o100610, 0o100601])
def test_any_new_executable_in_a_web_root_is_an_indicator(mode: int) -> None:
    assert finding("+", "F", b"/var/www/html/favicon.ico", mode).verdict is Verdict.INDICATOR


def test_playbook_rules_still_override_the_defaults() -> None:
    rules = playbook_rules([{"name": "deploy-link", "verdict": "churn", "paths": ["/srv/www/site/current"],
                             "file_types": ["@"]}])
    assert finding("+", "@", b"/srv/www/site/current", rules=rules).verdict is Verdict.CHURN
    outside = playbook_rules([{"name": "out", "verdict": "suspicious", "paths": ["/opt/**"],
                               "link_outside": "/opt/app"}], defaults=False)
    assert finding("+", "@", b"/opt/app/x", link=b"/etc", rules=outside).verdict is Verdict.SUSPICIOUS
    assert finding("+", "@", b"/opt/app/x", link=b"y", rules=outside).verdict is Verdict.BENIGN
    with pytest.raises(RuleError, match="link_outside"):
        Rule.from_mapping({"name": "bad", "verdict": "indicator", "paths": ["/**"], "link_outside": "rel"})


def test_finding_keeps_the_exact_path_bytes_for_the_journal() -> None:
    hostile = b"/srv/www/\xff\x1b[2J\n" + b"x" * 600 + b".php"
    found = finding("+", "F", hostile)
    assert base64.b64decode(found.path_b64) == hostile
