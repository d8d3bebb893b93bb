"""The readiness parsers on the configuration texts a host sends: the seed lessons, read without trusting them."""

from __future__ import annotations

from recovery.actions.check import parsers

SITE = """\
<VirtualHost *:80>
    DocumentRoot /srv/www/htdocs
    ScriptAlias /cgi-bin/ /srv/www/cgi-bin/
    <Directory /srv/www/htdocs>
        Options Indexes FollowSymLinks
        AllowOverride All
    </Directory>
    <Directory "/srv/www/cgi-bin">
        Options +ExecCGI
    </Directory>
    # Options +ExecCGI in a comment is nothing
</VirtualHost>
"""
ALLOWED = ["/srv/www/cgi-bin", "/usr/lib/cgi-bin"]


def outside(files: dict[str, str], htaccess: dict[str, str] | None = None) -> list[str]:
    grants = parsers.cgi_grants(files, htaccess)
    return [g.describe() for g in parsers.cgi_outside(grants, ALLOWED)]


def test_cgi_in_the_configured_directory_only_is_fine() -> None:
    assert outside({"lab.conf": SITE}) == []
    assert parsers.document_roots({"lab.conf": SITE}) == ["/srv/www/htdocs"]


def test_execcgi_in_the_web_root_is_named_with_file_and_line() -> None:
    bad = SITE.replace("Options Indexes FollowSymLinks", "Options Indexes +ExecCGI")
    assert outside({"lab.conf": bad}) == ["lab.conf:5 Options Indexes +ExecCGI for /srv/www/htdocs"]


def test_options_all_includes_execcgi_and_minus_execcgi_does_not() -> None:
    assert outside({"a.conf": "<Directory /srv>\nOptions All\n</Directory>\n"})
    assert not outside({"a.conf": "<Directory /srv>\nOptions +Indexes -ExecCGI\n</Directory>\n"})


def test_a_cgi_handler_in_an_htaccess_is_named_for_its_directory() -> None:
    found = outside({"/srv/www/htdocs/.htaccess": "AddHandler cgi-script .pl .cgi\n"},
                    {"/srv/www/htdocs/.htaccess": "/srv/www/htdocs"})
    assert found == ["/srv/www/htdocs/.htaccess:1 AddHandler cgi-script .pl .cgi for /srv/www/htdocs"]


def test_server_wide_handler_location_and_stray_scriptalias_are_outside() -> None:
    conf = ("AddHandler cgi-script .cgi\n<Location /x>\nSetHandler cgi-script\n</Location>\n"
            "ScriptAlias /s/ /srv/www/htdocs/s/\n")
    found = outside({"apache2.conf": conf})
    assert [f.split(" ", 1)[0] for f in found] == ["apache2.conf:1", "apache2.conf:3", "apache2.conf:5"]
    assert "server-wide" in found[0] and "for /srv/www/htdocs/s/" in found[2]


def test_a_directory_below_an_allowed_one_is_allowed_but_a_lookalike_prefix_is_not() -> None:
    ok = "<Directory /srv/www/cgi-bin/stats>\nOptions ExecCGI\n</Directory>\n"
    lookalike = "<Directory /srv/www/cgi-bin-old>\nOptions ExecCGI\n</Directory>\n"
    assert not outside({"a": ok}) and outside({"a": lookalike})


def test_continuations_unbalanced_quotes_and_stray_closers_do_not_stop_the_reading() -> None:
    conf = '</Directory>\nOptions \\\n  +ExecCGI\n<Directory "/srv/x>\nOptions ExecCGI\n'
    found = outside({"a": conf})
    assert len(found) == 2 and found[0].startswith("a:2 Options +ExecCGI server-wide")


def test_debians_serve_cgi_bin_is_allowed() -> None:
    conf = """<IfModule mod_alias.c>
\t<IfModule mod_cgi.c>
\t\tDefine ENABLE_USR_LIB_CGI_BIN
\t</IfModule>
\t<IfDefine ENABLE_USR_LIB_CGI_BIN>
\t\tScriptAlias /cgi-bin/ /usr/lib/cgi-bin/
\t\t<Directory "/usr/lib/cgi-bin">
\t\t\tAllowOverride None
\t\t\tOptions +ExecCGI -MultiViews +SymLinksIfOwnerMatch
\t\t</Directory>
\t</IfDefine>
</IfModule>
"""
    assert len(parsers.cgi_grants({"serve-cgi-bin.conf": conf})) == 2 and not outside({"serve-cgi-bin.conf": conf})


KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5"


def test_authorized_keys_restricted_only_with_both_from_and_command() -> None:
    text = "\n".join([
        f"ssh-ed25519 {KEY} plain",
        f'from="10.0.0.1",command="/usr/bin/rrsync /srv" ssh-ed25519 {KEY} both',
        f'command="/bin/backup" ssh-ed25519 {KEY} command-only',
        f'FROM="10.0.0.1",Command="x",no-pty ssh-ed25519 {KEY} upper-case',
        f'from="",command="x" ssh-ed25519 {KEY} empty-from',
        "# a comment", "", "garbage line",
    ])
    keys = parsers.authorized_keys(text)
    assert [(k.comment, k.restricted) for k in keys] == [
        ("plain", False), ("both", True), ("command-only", False), ("upper-case", True), ("empty-from", False)]
    assert keys[1].line == 2 and keys[1].options["command"] == "/usr/bin/rrsync /srv"


def test_quoted_commas_spaces_and_escaped_quotes_stay_inside_their_option() -> None:
    line = (f'command="rsync --server -e.LsfxC . /a,b \\"c\\"",from="10.0.0.1,10.0.0.2",restrict '
            f"ssh-ed25519 {KEY} deploy@staging")
    (key,) = parsers.authorized_keys(line)
    assert key.options == {"command": 'rsync --server -e.LsfxC . /a,b "c"', "from": "10.0.0.1,10.0.0.2",
                           "restrict": None}
    assert key.restricted and key.key == KEY and key.comment == "deploy@staging"


def test_a_command_that_names_a_key_type_is_not_taken_for_the_key() -> None:
    (key,) = parsers.authorized_keys(f'command="echo ssh-ed25519 x" ssh-ed25519 {KEY} c')
    assert key.key == KEY and not key.restricted


def test_authorized_keys_files_follow_sshd_t() -> None:
    assert parsers.authorized_keys_paths("", "/home/b", "b") == ["/home/b/.ssh/authorized_keys",
                                                                 "/home/b/.ssh/authorized_keys2"]
    sshd_t = "authorizedkeysfile /etc/ssh/keys/%u .ssh/ak none\n"
    assert parsers.authorized_keys_paths(sshd_t, "/root", "root") == ["/etc/ssh/keys/root", "/root/.ssh/ak"]


def test_root_login_global_from_sshd_t_and_match_blocks_from_the_files() -> None:
    assert parsers.sshd_value("port 22\npermitrootlogin without-password\n", "permitrootlogin") == "without-password"
    files = {"/etc/ssh/sshd_config": "PermitRootLogin prohibit-password\nMatch Address 10.0.0.0/8\n"
                                     "  PermitRootLogin yes\nMatch User backup\n  PermitRootLogin no\n"}
    (found,) = parsers.match_root_logins(files)
    assert "sshd_config:3 PermitRootLogin yes in 'Match Address 10.0.0.0/8'" in found


def test_root_login_without_sshd_t_takes_the_first_value_in_reading_order() -> None:
    files = [("/etc/ssh/sshd_config.d/00.conf", "# PermitRootLogin no\nPermitRootLogin yes\n"),
             ("/etc/ssh/sshd_config", "PermitRootLogin no\n")]
    assert parsers.first_root_login(files) == ("/etc/ssh/sshd_config.d/00.conf:2", "yes")
    assert parsers.first_root_login([("c", "Match all\nPermitRootLogin yes\n")]) is None


def test_rsyslog_legacy_and_omfwd_forwards() -> None:
    conf = """module(load="imuxsock")
*.* @@logs.example.net:514
#*.* @old.example.net
auth,authpriv.* @(z9)loghost
*.* action(type="omfwd"
           target="10.1.2.3" port="514" protocol="tcp")
mail.* -/var/log/mail.log
"""
    found = parsers.log_forwards({"/etc/rsyslog.conf": conf})
    assert [(f.line, f.target) for f in found] == [(2, "logs.example.net:514"), (4, "loghost"), (5, "10.1.2.3")]


def test_syslog_ng_and_journal_upload_forwards_and_local_only_configs() -> None:
    files = {"/etc/syslog-ng/conf.d/remote.conf": 'destination d_net { network("10.9.9.9" port(514)); };\n'
                                                  'destination d_file { file("/var/log/x"); };\n',
             "/etc/systemd/journal-upload.conf": "[Upload]\nURL=https://logs:19532\n",
             "/etc/rsyslog.d/50-default.conf": "*.* /var/log/syslog\n"}
    found = parsers.log_forwards(files)
    assert sorted((f.daemon, f.target) for f in found) == [("journal-upload", "https://logs:19532"),
                                                           ("syslog-ng", "10.9.9.9")]


def test_a_commented_out_cron_line_is_found_but_not_active() -> None:
    files = {"/etc/cron.d/auto-snapshot": "# run by the lab at fixed points, not by cron:\n"
                                          "# 0 * * * * root /usr/local/sbin/auto-snapshot tank/www >/dev/null\n",
             "systemctl list-timers": "Mon 2026-11-30 19:00:00 UTC 20min left n/a n/a sanoid.timer sanoid.service\n"}
    lines = parsers.schedule_lines(files, ["auto-snapshot"])
    assert [(line.line, line.active) for line in lines] == [(2, False)]
    assert [line.active for line in parsers.schedule_lines(files, ["sanoid"])] == [True]
