"""`recover check` items with a fake host: judgements, the RPO, exit codes, the JSON shape, hostile replies."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
from click.testing import CliRunner

from recovery.actions.check import diff_cost, lessons, restore_points
from recovery.actions.check.model import Report, Status, Subject, failed, passed, waived, warned
from recovery.actions.check.preflight import refused, scope
from recovery.actions.check.reach import rescue_image
from recovery.actions.check.remote import split_files
from recovery.config.errors import ConfigError
from recovery.config.inventory import Host, Readiness, duration_seconds
from recovery.cli import main
from recovery.config.load import load_inventory
from recovery.engine import control
from recovery.engine.exit_codes import Exit
from recovery.transport.result import Result

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5"


class FakeHost:
    """Answers the check's reading commands from a dict of files and command outputs; records every command."""

    def __init__(self, files: dict[str, bytes], commands: dict[str, bytes] | None = None) -> None:
        self.files = files
        self.commands = commands or {}
        self.seen: list[str] = []

    def run(self, command: str, timeout: float = 300.0) -> Result:
        self.seen.append(command)
        marker = re.search(r"(--recovery-check-[0-9a-f]+--)", command)
        if marker:
            wanted = command.split("for f in ", 1)[1].split("; do", 1)[0].split()
            body = b"".join(b"\n" + marker.group(1).encode() + b" " + path.encode() + b"\n" + data
                            for path, data in self.files.items() if any(_glob(w.strip("'"), path) for w in wanted))
            return Result(body, b"", 0, 0.0)
        for prefix, out in self.commands.items():
            if command.startswith(prefix):
                return Result(out, b"", 0, 0.0)
        return Result(b"", b"not found", 1, 0.0)


def _glob(pattern: str, path: str) -> bool:
    return fnmatch.fnmatch(path, pattern)


def host(**check: object) -> Host:
    return Host.model_validate({"address": "127.0.0.1", "datasets": ["tank/www"],
                                "ssh": {"key": "/k", "host_key": f"ssh-ed25519 {KEY}"}, "check": check})


def test_root_login_yes_fails_and_prohibit_password_passes() -> None:
    bad = FakeHost({}, {"sshd -T": b"port 22\npermitrootlogin yes\n"})
    item = lessons.root_login(bad)
    assert item.status is Status.FAIL and "PermitRootLogin yes (sshd -T)" in item.detail
    assert "prohibit-password" in item.fix
    good = FakeHost({"/etc/ssh/sshd_config": b"PermitRootLogin prohibit-password\n"},
                    {"sshd -T": b"permitrootlogin prohibit-password\n"})
    assert lessons.root_login(good).status is Status.PASS


def test_root_login_in_a_match_block_fails_even_when_sshd_t_says_no() -> None:
    config = b"PermitRootLogin no\nMatch Address 192.0.2.0/24\n    PermitRootLogin yes\n"
    item = lessons.root_login(FakeHost({"/etc/ssh/sshd_config": config}, {"sshd -T": b"permitrootlogin no\n"}))
    assert item.status is Status.FAIL and "Match Address 192.0.2.0/24" in item.detail


def test_automation_keys_exempt_the_orchestrators_own_key_and_name_a_loose_one() -> None:
    keys = (f"ssh-ed25519 {KEY} operator\n"
            f'from="10.77.0.13",command="/usr/local/sbin/www-sync-receive",restrict ssh-ed25519 {KEY}x deploy\n')
    fake = FakeHost({"/root/.ssh/authorized_keys": keys.encode()},
                    {"getent passwd": b"root:x:0:0:root:/root:/bin/bash\n"})
    item = lessons.automation_keys(fake, Readiness(automation_accounts=["root"]), f"ssh-ed25519 {KEY}")
    assert item.status is Status.PASS and "1 key(s)" in item.detail
    fake.files["/root/.ssh/authorized_keys"] += f"ssh-ed25519 {KEY}y intruder@x\n".encode()
    item = lessons.automation_keys(fake, Readiness(automation_accounts=["root"]), f"ssh-ed25519 {KEY}")
    assert item.status is Status.FAIL and "/root/.ssh/authorized_keys:3" in item.detail and "intruder@x" in item.detail


def test_an_account_name_reaches_the_host_quoted() -> None:
    fake = FakeHost({})
    lessons.automation_keys(fake, Readiness(automation_accounts=["x; rm -rf /"]), None)
    assert "getent passwd -- 'x; rm -rf /'" in fake.seen


def test_logs_need_a_forward_and_the_daemon_that_ships_it() -> None:
    conf = {"/etc/rsyslog.d/90-remote.conf": b"*.* @@loghost:514\n"}
    assert lessons.logs(FakeHost({})).status is Status.FAIL
    without_daemon = lessons.logs(FakeHost(conf))
    assert without_daemon.status is Status.FAIL and "rsyslogd is not installed" in without_daemon.detail
    shipped = lessons.logs(FakeHost(conf, {"for p in rsyslogd": b"/usr/sbin/rsyslogd\n"}))
    assert shipped.status is Status.PASS and "loghost:514" in shipped.detail


def test_cgi_reads_htaccess_under_the_document_root() -> None:
    site = b"DocumentRoot /srv/www/htdocs\n<Directory /srv/www/cgi-bin>\nOptions ExecCGI\n</Directory>\n"
    fake = FakeHost({"/etc/apache2/sites-enabled/lab.conf": site,
                     "/srv/www/htdocs/.htaccess": b"Options +ExecCGI\n"},
                    {"find /srv/www/htdocs": b"/srv/www/htdocs/.htaccess\n"})
    item = lessons.cgi(fake, Readiness(cgi_dirs=["/srv/www/cgi-bin"]))
    assert item.status is Status.FAIL and "/srv/www/htdocs/.htaccess:1 Options +ExecCGI for /srv/www/htdocs" in item.detail


def test_hostile_replies_are_bounded_decoded_and_defanged() -> None:
    evil = b"\x1b]0;owned\x07\x1b[2J\xff\xfe PermitRootLogin yes\n" + b"A" * 3_000_000
    item = lessons.root_login(FakeHost({}, {"sshd -T": b"permitrootlogin " + evil}))
    assert item.status is Status.PASS or item.status is Status.FAIL  # judged, not crashed
    assert "\x1b" not in item.detail and len(item.detail) < 700
    files = split_files(b"\n--m-- /etc/a\n\xff\xfe\x1b[31mred\n--m--x /etc/c\n--m-- /etc/b\nok", "--m--")
    assert list(files) == ["/etc/a", "/etc/b"] and files["/etc/a"].startswith("\\xff\\xfe")
    shown = failed("x", "\x1b[2Jline one\nline two\u202e", "")
    assert "\x1b" not in shown.detail and "\n" not in shown.detail and "\u202e" not in shown.detail


def test_rpo_judges_the_oldest_of_the_newest_snapshots() -> None:
    now = 1_000_000.0
    h = host(rpo="2h")
    assert restore_points.rpo({"tank/www": int(now - 3600)}, h, now).status is Status.PASS
    late = restore_points.rpo({"tank/www": int(now - 3 * 3600), "tank/b": int(now)}, h, now)
    assert late.status is Status.FAIL and "tank/www is 3.0h old, older than the RPO 2h" in late.detail
    assert restore_points.rpo({"tank/www": None}, h, now).status is Status.FAIL
    unset = restore_points.rpo({"tank/www": int(now - 45)}, host(), now)
    assert unset.status is Status.WARN and "45s old; no RPO set" in unset.detail


def test_evidence_snapshots_are_not_restore_points() -> None:
    rows = [SimpleNamespace(name="tank/www@auto-1", creation=10), SimpleNamespace(name="tank/www@incident-x", creation=99),
            SimpleNamespace(name="tank/other@auto-2", creation=50)]
    client = SimpleNamespace(list_datasets=lambda root, types: rows)
    assert restore_points.newest_snapshots(client, ["tank/www", "tank/none"]) == {"tank/www": 10, "tank/none": None}


def test_access_times_on_a_protected_dataset_warn_naming_it_and_the_fix() -> None:
    asked: list[tuple[list[str], list[str]]] = []

    def get(datasets: list[str], properties: list[str]) -> list[dict[str, str]]:
        asked.append((datasets, properties))
        values = {"rpool/ROOT/debian": "on", "tank/www": "off", "tank/home": "off"}
        return [{"name": d, "property": "atime", "value": values[d], "source": "default"} for d in datasets]

    client = SimpleNamespace(get=get)
    item = diff_cost.atime(client, ["rpool/ROOT/debian", "tank/www"])
    assert item.status is Status.WARN and "access times on for rpool/ROOT/debian:" in item.detail
    assert item.fix == "zfs set atime=off rpool/ROOT/debian" and asked == [(["rpool/ROOT/debian", "tank/www"], ["atime"])]
    assert diff_cost.atime(client, ["tank/www", "tank/home"]).status is Status.PASS


def test_a_dataset_the_host_leaves_out_of_its_atime_reply_is_not_taken_for_off() -> None:
    client = SimpleNamespace(get=lambda datasets, properties: [
        {"name": "tank/other\x1b[2J", "property": "atime", "value": "off", "source": "local"}])
    item = diff_cost.atime(client, ["tank/www"])
    assert item.status is Status.WARN and "tank/www" in item.detail and "\x1b" not in item.detail
    assert diff_cost.atime(SimpleNamespace(), []).status is Status.PASS  # nothing protected: the host is not asked


def test_snapshot_schedule_commented_out_fails_and_says_so() -> None:
    fake = FakeHost({"/etc/cron.d/auto-snapshot": b"# 0 * * * * root /usr/local/sbin/auto-snapshot tank/www\n"})
    item = restore_points.schedule(fake, host())
    assert item.status is Status.FAIL and "commented out" in item.detail
    fake.files["/etc/cron.d/auto-snapshot"] = b"0 * * * * root /usr/local/sbin/auto-snapshot tank/www\n"
    assert restore_points.schedule(fake, host()).status is Status.PASS


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_durations(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


def test_a_bad_rpo_or_an_unreasoned_waiver_is_a_config_error_with_its_key_path(tmp_path) -> None:
    base = f'[hosts.a]\naddress = "x"\n[hosts.a.ssh]\nkey = "/k"\nhost_key = "ssh-ed25519 {KEY}"\n[hosts.a.check]\n'
    for extra, expected in (('rpo = "2 hours"', "hosts.a.check.rpo"), ('waive = { logs = " " }', "waive.logs"),
                            ('waive = { log = "x" }', "hosts.a.check.waive")):
        path = tmp_path / "inventory.toml"
        path.write_text(base + extra + "\n")
        with pytest.raises(ConfigError) as caught:
            load_inventory(path)
        assert expected in " ".join(caught.value.messages)


def test_rescue_image_absent_warns_and_the_bmc_says_whether_its_image_is_the_known_good_one() -> None:
    from recovery.config.inventory import LabOob
    from recovery.oob.base import OobNotSupported, OobRefused

    assert rescue_image(host(), lambda: None).status is Status.WARN  # type: ignore[arg-type,return-value]
    lab = SimpleNamespace(oob=LabOob.model_validate(
        {"driver": "lab", "machine": "m", "rescue": True, "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"}}))

    class Bmc:
        def __init__(self, answer: object) -> None:
            self.answer = answer

        def check_rescue(self) -> str:
            if isinstance(self.answer, Exception):
                raise self.answer
            return str(self.answer)

    verified = rescue_image(lab, lambda: Bmc("rescue image sha256 ab12 verified"))  # type: ignore[arg-type]
    assert verified.status is Status.PASS and "verified" in verified.detail
    changed = rescue_image(lab, lambda: Bmc(OobRefused("eu-web: rescue image sha256 differs")))  # type: ignore[arg-type]
    assert changed.status is Status.FAIL and "differs" in changed.detail
    blind = rescue_image(lab, lambda: Bmc(OobNotSupported("eu-web: cannot show")))  # type: ignore[arg-type]
    assert blind.status is Status.WARN


def report(*statuses: Status) -> Report:
    items = [{Status.PASS: passed, Status.WARN: lambda n, d: warned(n, d, "fix"),
              Status.FAIL: lambda n, d: failed(n, d, "fix")}[s](f"item{i}", "d") for i, s in enumerate(statuses)]
    return Report("web", [Subject("host", "eu-web", items)])


def test_exit_codes_pass_warn_fail() -> None:
    assert report(Status.PASS).exit_code() is Exit.OK == 0
    assert report(Status.PASS, Status.WARN).exit_code() is Exit.CHECK_WARN == 8
    assert report(Status.WARN, Status.FAIL, Status.PASS).exit_code() is Exit.FAILED == 1
    assert report().exit_code() is Exit.OK


def test_json_shape_is_stable() -> None:
    shape = json.loads(json.dumps(report(Status.PASS, Status.FAIL).as_json()))
    assert set(shape) == {"target", "deep", "status", "exit_code", "counts", "subjects"}
    assert shape["counts"] == {"PASS": 1, "WARN": 0, "FAIL": 1} and shape["exit_code"] == 1
    assert shape["subjects"][0] == {"kind": "host", "name": "eu-web", "items": [
        {"name": "item0", "status": "PASS", "detail": "d", "fix": ""},
        {"name": "item1", "status": "FAIL", "detail": "d", "fix": "fix"}]}


def test_a_waiver_turns_only_a_fail_into_a_warn_with_the_reason() -> None:
    item = waived(failed("logs", "no forward", "add one"), "lab has no syslog daemon")
    assert item.status is Status.WARN and item.detail.startswith("waived (lab has no syslog daemon)")
    assert waived(passed("logs", "ok"), "x").status is Status.PASS


def test_accepting_an_item_by_name_or_by_host_and_name() -> None:
    r = Report("web", [Subject("host", "eu-web", [failed("ssh", "d", "f")]),
                       Subject("host", "us-web", [failed("ssh", "d", "f"), failed("bmc", "d", "f")])])
    assert refused(r, ()) == ["eu-web:ssh", "us-web:ssh", "us-web:bmc"]
    assert refused(r, ("ssh",)) == ["us-web:bmc"]
    assert refused(r, ("us-web:bmc", "eu-web:ssh")) == ["us-web:ssh"]


def test_the_inventory_schema_knows_the_check_table() -> None:
    schema = json.loads((Path(__file__).parents[2] / "schema" / "inventory.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    entry = {"address": "x", "ssh": {"key": "/k", "host_key": f"ssh-ed25519 {KEY}"},
             "check": {"rpo": "2h", "cgi_dirs": ["/srv/cgi"], "waive": {"logs": "why"}}}
    assert not list(validator.iter_errors({"hosts": {"a": entry}}))
    entry["check"] = {"waive": {"log": "why"}}
    assert list(validator.iter_errors({"hosts": {"a": entry}}))


def test_the_preflight_checks_only_what_the_plan_reaches(tmp_path) -> None:
    hosts = "".join(f'[hosts.{h}]\naddress = "x"\n[hosts.{h}.ssh]\nkey = "/k"\nhost_key = "ssh-ed25519 {KEY}"\n'
                    for h in ("a", "b"))
    oob = '[hosts.b.oob]\ndriver = "ipmi"\naddress = "y"\nusername = "u"\npassword = "env:P"\n'
    (tmp_path / "inventory.toml").write_text(hosts + oob + '[groups]\nweb = ["a", "b"]\n')
    for steps, expected in (
        (["http_check"], {}),
        (["contain"], {"a": {"secrets"}, "b": {"secrets", "bmc"}}),
        (["contain", "run"], {"a": {"secrets", "ssh"}, "b": {"secrets", "bmc", "ssh"}}),
    ):
        params = {"http_check": 'params = { url = "http://127.0.0.1:1/" }', "run": 'params = { command = "true" }',
                  "contain": "params = {}"}
        (tmp_path / "pb.toml").write_text("".join(f'[[steps]]\nkind = "{k}"\n{params[k]}\n' for k in steps))
        inventory, plan = control.prepare(tmp_path / "inventory.toml", tmp_path / "pb.toml", "web")
        found = scope(inventory, plan)
        assert {h: set(found.wanted(h)) for h in found.hosts} == expected and found.services == ()


def test_accept_check_takes_a_preflight_item_alone_or_for_one_host() -> None:
    result = CliRunner().invoke(main, ["run", "eu-web", "--accept-check", "eu-web:sssh"])
    assert result.exit_code == 2 and "names no check item (items: secrets, ssh, bmc, dns, haproxy)" in result.output
