"""The seed incidents' lessons, read from the host: CGI, automation keys, logs off the host, root's login.

2005: a stats CGI gave the intruder a shell and the logs were truncated.
2009: a backup key with no ``from=``/``command=`` opened the staging host,
ExecCGI in every vhost ran the scripts, and no log was kept off the machine.
"""

from __future__ import annotations

import os
import shlex

from recovery.actions.check import parsers
from recovery.actions.check.model import Item, failed, passed
from recovery.actions.check.remote import Runs, find_named, output, read_files
from recovery.config.inventory import Readiness

APACHE_CONFIG = ["/etc/apache2/apache2.conf", "/etc/apache2/conf-enabled/*.conf", "/etc/apache2/sites-enabled/*",
                 "/etc/apache2/mods-enabled/*.conf", "/etc/httpd/conf/httpd.conf", "/etc/httpd/conf.d/*.conf"]
SYSLOG_CONFIG = ["/etc/rsyslog.conf", "/etc/rsyslog.d/*.conf", "/etc/syslog-ng/syslog-ng.conf",
                 "/etc/syslog-ng/conf.d/*.conf", "/etc/systemd/journal-upload.conf",
                 "/etc/systemd/journal-upload.conf.d/*.conf"]
SSHD_CONFIG = ["/etc/ssh/sshd_config.d/*.conf", "/etc/ssh/sshd_config"]  # Debian includes the .d files first
#: The program that must be there for a forward to ship anything.
LOG_DAEMONS = {"rsyslog": "rsyslogd", "syslog-ng": "syslog-ng", "journal-upload": "systemd-journal-upload"}


def cgi(session: Runs, readiness: Readiness) -> Item:
    """CGI (ExecCGI, a cgi-script handler, ScriptAlias) only in the inventory's ``cgi_dirs``."""
    files = read_files(session, APACHE_CONFIG)
    if not files:
        return passed("cgi", "no Apache configuration found")
    htaccess = read_files(session, find_named(session, parsers.document_roots(files), ".htaccess"), quoted=True)
    grants = parsers.cgi_grants({**files, **htaccess}, {path: os.path.dirname(path) for path in htaccess})
    outside = parsers.cgi_outside(grants, readiness.cgi_dirs)
    allowed = ", ".join(readiness.cgi_dirs) or "none"
    if outside:
        return failed("cgi", f"CGI enabled outside the CGI directories ({allowed}): "
                             + "; ".join(g.describe() for g in outside[:5]),
                      "remove ExecCGI / the cgi-script handler there (or add the directory to "
                      "check.cgi_dirs if it is meant to run CGI), then reload Apache")
    return passed("cgi", f"{len(grants)} CGI grant(s), all in {allowed}")


def automation_keys(session: Runs, readiness: Readiness, own_key: str | None) -> Item:
    """Every authorized_keys line of each automation account carries ``from=`` and ``command=``.

    ``own_key`` (this orchestrator's public key, 'TYPE BASE64') is exempt: recovery needs a shell.
    """
    if not readiness.automation_accounts:
        return passed("automation-keys", "no automation accounts named in the inventory (check.automation_accounts)")
    sshd_t = output(session, "sshd -T 2>/dev/null")
    loose, counted = [], 0
    for account in readiness.automation_accounts:
        home = _home(session, account)
        if home is None:
            continue
        keys = read_files(session, parsers.authorized_keys_paths(sshd_t, home, account), quoted=True)
        for path, text in keys.items():
            for key in parsers.authorized_keys(text):
                if own_key == f"{key.key_type} {key.key}":
                    continue
                counted += 1
                if not key.restricted:
                    loose.append(f"{path}:{key.line} ({key.key_type} {key.comment or key.key[-12:]})")
    if loose:
        return failed("automation-keys", f"keys of automation accounts without from= and command=: {'; '.join(loose[:5])}",
                      'prefix each with from="SOURCE-ADDRESS",command="THE-ONE-COMMAND",restrict (one key per '
                      "job and per source host)")
    return passed("automation-keys", f"{counted} key(s) of {', '.join(readiness.automation_accounts)}, all with "
                                     "from= and command=")


def _home(session: Runs, account: str) -> str | None:
    fields = output(session, f"getent passwd -- {shlex.quote(account)}").strip().split(":")
    return fields[5] if len(fields) >= 7 and fields[5].startswith("/") else None


def logs(session: Runs) -> Item:
    """A remote syslog target is configured, and the daemon that would ship to it is installed."""
    forwards = parsers.log_forwards(read_files(session, SYSLOG_CONFIG))
    if not forwards:
        return failed("logs", "no remote log target configured (rsyslog, syslog-ng, systemd-journal-upload)",
                      'ship logs off the host: e.g. /etc/rsyslog.d/90-remote.conf with '
                      '`*.* action(type="omfwd" target="LOGHOST" port="514" protocol="tcp")`, then restart rsyslog')
    installed = set(output(session, "for p in rsyslogd syslog-ng; do command -v $p; done; ls /lib/systemd/systemd-journal-upload "
                                    "/usr/lib/systemd/systemd-journal-upload 2>/dev/null; true").split())
    shipping = [f for f in forwards if any(p.endswith("/" + LOG_DAEMONS[f.daemon]) for p in installed)]
    if not shipping:
        first = forwards[0]
        return failed("logs", f"{first.file}:{first.line} forwards to {first.target}, but "
                              f"{LOG_DAEMONS[first.daemon]} is not installed: nothing ships it",
                      f"install and enable {first.daemon} (or remove the stale configuration)")
    return passed("logs", "; ".join(f"{f.daemon} -> {f.target} ({f.file}:{f.line})" for f in shipping[:3]))


def root_login(session: Runs) -> Item:
    """Root never logs in with a password: ``sshd -T`` for the global value, the files for Match blocks."""
    files = read_files(session, SSHD_CONFIG)
    value = parsers.sshd_value(output(session, "sshd -T 2>/dev/null"), "permitrootlogin")
    where = "sshd -T"
    if value is None:  # no sshd -T (not root, or no sshd binary where expected): the files in sshd's order
        first = parsers.first_root_login(files.items())
        where, value = first if first else ("OpenSSH's default", "prohibit-password")
    matches = parsers.match_root_logins(files)
    if value in parsers.ROOT_PASSWORD_VALUES or matches:
        found = [f"PermitRootLogin {value} ({where})"] if value in parsers.ROOT_PASSWORD_VALUES else []
        return failed("root-login", "root may log in with a password: " + "; ".join(found + matches),
                      "set `PermitRootLogin prohibit-password` (or no) in /etc/ssh/sshd_config and in every "
                      "Match block, then `systemctl reload ssh`")
    return passed("root-login", f"PermitRootLogin {value} ({where})")
