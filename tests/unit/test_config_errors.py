"""Every malformed input gets one exact message naming the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

import recovery.steps  # noqa: F401
from recovery.config.errors import ConfigError
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import resolve
from recovery.engine.plan import build

HOST = """
[hosts.eu-web]
address = "10.0.0.1"
[hosts.eu-web.ssh]
key = "/k"
host_key = "ssh-ed25519 AAAA"
"""

INVENTORY_CASES = [
    ("not toml", "hosts = [", "inventory.toml: not valid TOML: Invalid value (at end of document)"),
    ("no hosts", "", "inventory.toml: hosts: missing required key"),
    ("hosts not a table", "hosts = 3", "inventory.toml: hosts: expected a table, got 3"),
    ("unknown top key", HOST + "\n[hostz]\n", "inventory.toml: (top level): unknown key 'hostz' (did you mean 'hosts'?)"),
    ("unknown host key", HOST.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\nadress = "x"'),
     "inventory.toml: hosts.eu-web: unknown key 'adress' (did you mean 'address'?)"),
    ("missing address", HOST.replace('address = "10.0.0.1"\n', ""), "inventory.toml: hosts.eu-web.address: missing required key"),
    ("missing ssh", '[hosts.eu-web]\naddress = "x"\n', "inventory.toml: hosts.eu-web.ssh: missing required key"),
    ("missing key", HOST.replace('key = "/k"\n', ""), "inventory.toml: hosts.eu-web.ssh.key: missing required key"),
    ("port not int", HOST + 'port = "twenty-two"\n', "inventory.toml: hosts.eu-web.ssh.port: expected an integer, got 'twenty-two'"),
    ("port too big", HOST + "port = 70000\n", "inventory.toml: hosts.eu-web.ssh.port: 70000: input should be less than or equal to 65535"),
    ("no pin", HOST.replace('host_key = "ssh-ed25519 AAAA"\n', ""),
     "inventory.toml: hosts.eu-web.ssh: set exactly one of 'host_key' or 'known_hosts' (host keys are pinned)"),
    ("two pins", HOST + 'known_hosts = "/kh"\n',
     "inventory.toml: hosts.eu-web.ssh: set exactly one of 'host_key' or 'known_hosts' (host keys are pinned)"),
    ("bad pin", HOST.replace("ssh-ed25519 AAAA", "AAAA"),
     "inventory.toml: hosts.eu-web.ssh: host_key must be 'TYPE BASE64', e.g. 'ssh-ed25519 AAAAC3Nz...'"),
    ("bad role", HOST.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\nrole = "db"'),
     "inventory.toml: hosts.eu-web.role: 'db' is not allowed (expected one of: 'web', 'staging', 'mirror', 'other')"),
    ("bad host name", HOST.replace("eu-web", '"eu web"'), "inventory.toml: hosts.\"eu web\": 'eu web' is not a valid name (letters, digits, '.', '_', '-')"),
    ("unknown oob driver", HOST + '[hosts.eu-web.oob]\ndriver = "ipmii"\n',
     "inventory.toml: hosts.eu-web.oob.driver: unknown driver 'ipmii' (expected one of: lab, ipmi, redfish, libvirt)"),
    ("oob without driver", HOST + '[hosts.eu-web.oob]\naddress = "x"\n', "inventory.toml: hosts.eu-web.oob.driver: missing required key"),
    ("ipmi missing password", HOST + '[hosts.eu-web.oob]\ndriver = "ipmi"\naddress = "x"\nusername = "u"\n',
     "inventory.toml: hosts.eu-web.oob.password: missing required key"),
    ("ipmi literal password", HOST + '[hosts.eu-web.oob]\ndriver = "ipmi"\naddress = "x"\nusername = "u"\npassword = "hunter2"\n',
     "inventory.toml: hosts.eu-web.oob.password: a secret must be a reference 'env:VARIABLE' or 'file:/path', never the secret itself"),
    ("ipmi bad port", HOST + '[hosts.eu-web.oob]\ndriver = "ipmi"\naddress = "x"\nusername = "u"\npassword = "env:P"\nport = 0\n',
     "inventory.toml: hosts.eu-web.oob.port: 0: input should be greater than or equal to 1"),
    ("redfish unknown key", HOST + '[hosts.eu-web.oob]\ndriver = "redfish"\nurl = "x"\nsystem = "s"\nusername = "u"\npassword = "env:P"\nverify = false\n',
     "inventory.toml: hosts.eu-web.oob: unknown key 'verify' (did you mean 'verify_tls'?)"),
    ("health status", HOST + '[[hosts.eu-web.health]]\nurl = "http://x/"\nstatus = 999\n',
     "inventory.toml: hosts.eu-web.health[0].status: 999: input should be less than or equal to 599"),
    ("datasets not list", HOST.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\ndatasets = "tank/www"'),
     "inventory.toml: hosts.eu-web.datasets: expected a list, got 'tank/www'"),
    ("root password literal", HOST.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\nroot_password = "toor"'),
     "inventory.toml: hosts.eu-web.root_password: a secret must be a reference 'env:VARIABLE' or 'file:/path', never the secret itself"),
    ("group member unknown", HOST + '[groups]\nweb = ["eu-web", "us-web"]\n', "inventory.toml: groups.web[1]: no host or group named 'us-web'"),
    ("group cycle", HOST + '[groups]\na = ["a"]\n', "inventory.toml: groups.a: group 'a' contains itself"),
    ("name clash", HOST + '[services.eu-web]\nhosts = ["eu-web"]\n',
     "inventory.toml: services.eu-web: 'eu-web' is also the name of a host; names must be unique across hosts, groups and services"),
    ("gateway unknown", HOST + 'gateway = "bastion"\n', "inventory.toml: hosts.eu-web.ssh.gateway: no host named 'bastion'"),
    ("service host unknown", HOST + '[services.www]\nhosts = ["nope"]\n', "inventory.toml: services.www.hosts[0]: no host or group named 'nope'"),
    ("service mirror unknown", HOST + '[services.www]\nhosts = ["eu-web"]\nmirror = "m"\n', "inventory.toml: services.www.mirror: no host named 'm'"),
    ("dns tsig literal", HOST + '[services.www]\nhosts = ["eu-web"]\n[services.www.traffic.dns]\nserver = "s"\nzone = "z"\nrecord = "r"\ntsig_name = "k"\ntsig_secret = "c2VjcmV0"\nmirror_address = "1.2.3.4"\n',
     "inventory.toml: services.www.traffic.dns.tsig_secret: a secret must be a reference 'env:VARIABLE' or 'file:/path', never the secret itself"),
    ("dns bad algorithm", HOST + '[services.www]\nhosts = ["eu-web"]\n[services.www.traffic.dns]\nserver = "s"\nzone = "z"\nrecord = "r"\ntsig_name = "k"\ntsig_secret = "env:K"\nmirror_address = "1.2.3.4"\ntsig_algorithm = "md5"\n',
     "inventory.toml: services.www.traffic.dns.tsig_algorithm: 'md5' is not allowed (expected one of: 'hmac-sha256', 'hmac-sha512', 'hmac-sha1')"),
    ("haproxy servers not list", HOST + '[services.www]\nhosts = ["eu-web"]\n[services.www.traffic.haproxy]\nsocket = "/s"\nbackend = "b"\nservers = "eu-web"\n',
     "inventory.toml: services.www.traffic.haproxy.servers: expected a list, got 'eu-web'"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in INVENTORY_CASES], ids=[c[0] for c in INVENTORY_CASES])
def test_inventory_errors(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    Path("inventory.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_inventory(Path("inventory.toml"))
    assert info.value.messages == [expected]


GOOD_INVENTORY = HOST + '[groups]\nweb = ["eu-web"]\n'

PLAYBOOK_CASES = [
    ("no steps", "", "pb.toml: steps: missing required key"),
    ("empty steps", "steps = []", "pb.toml: steps: must not be empty"),
    ("step without kind", "[[steps]]\nname = 'x'\n", "pb.toml: steps[0].kind: missing required key"),
    ("unknown kind", "[[steps]]\nkind = 'rnu'\n",
     "pb.toml: steps[0].kind: unknown step kind 'rnu' (expected one of: approval, boot_normal, boot_single, contain, diff, divert, find_clean, golden_capture, http_check, message, preserve, restore, return, run, sweep, verify)"),
    ("bad on_failure", "[[steps]]\nkind = 'run'\non_failure = 'ignore'\nparams = { command = 'true' }\n",
     "pb.toml: steps[0].on_failure: 'ignore' is not allowed (expected one of: 'stop', 'continue', 'skip-host')"),
    ("negative timeout", "[[steps]]\nkind = 'run'\ntimeout = -1\nparams = { command = 'true' }\n",
     "pb.toml: steps[0].timeout: -1: input should be greater than 0"),
    ("too many retries", "[[steps]]\nkind = 'run'\nretries = 99\nparams = { command = 'true' }\n",
     "pb.toml: steps[0].retries: 99: input should be less than or equal to 20"),
    ("confirm not bool", "[[steps]]\nkind = 'run'\nconfirm = 'yes please'\nparams = { command = 'true' }\n",
     "pb.toml: steps[0].confirm: expected true or false, got 'yes please'"),
    ("unknown step key", "[[steps]]\nkind = 'run'\ntarget = ['web']\nparams = { command = 'true' }\n",
     "pb.toml: steps[0]: unknown key 'target' (did you mean 'targets'?)"),
    ("run without command", "[[steps]]\nkind = 'run'\n", "pb.toml: steps[0].params.command: missing required key"),
    ("run unknown param", "[[steps]]\nkind = 'run'\nparams = { command = 'true', expect = 0 }\n",
     "pb.toml: steps[0].params: unknown key 'expect' (did you mean 'expect_exit'?)"),
    ("run bad expect_exit", "[[steps]]\nkind = 'run'\nparams = { command = 'true', expect_exit = ['zero'] }\n",
     "pb.toml: steps[0].params.expect_exit[0]: expected an integer, got 'zero'"),
    ("http_check bad status", "[[steps]]\nkind = 'http_check'\nparams = { url = 'http://x/', status = 42 }\n",
     "pb.toml: steps[0].params.status: 42: input should be greater than or equal to 100"),
    ("message without text", "[[steps]]\nkind = 'message'\n", "pb.toml: steps[0].params.text: missing required key"),
    ("duplicate names", "[[steps]]\nkind = 'run'\nparams = { command = 'a' }\n[[steps]]\nkind = 'run'\nparams = { command = 'b' }\n",
     "pb.toml: steps[1].name: another step is already named 'run' (give each step a unique 'name')"),
    ("target unknown", "[[steps]]\nkind = 'run'\ntargets = ['db']\nparams = { command = 'a' }\n",
     "pb.toml: steps[0].targets[0]: no host or group named 'db'"),
    ("serial zero", "[order]\nserial = 0\n[[steps]]\nkind = 'run'\nparams = { command = 'a' }\n",
     "pb.toml: order.serial: 0: input should be greater than or equal to 1"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PLAYBOOK_CASES], ids=[c[0] for c in PLAYBOOK_CASES])
def test_playbook_errors(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    Path("inventory.toml").write_text(GOOD_INVENTORY)
    Path("pb.toml").write_text(text)
    inventory = load_inventory(Path("inventory.toml"))
    with pytest.raises(ConfigError) as info:
        build(inventory, load_playbook(Path("pb.toml")), resolve(inventory, "web"), Path("pb.toml"))
    assert info.value.messages == [expected]


def test_repository_config_is_valid():
    root = Path(__file__).resolve().parents[2]
    inventory = load_inventory(root / "inventory.toml")
    for name in ("recover", "golden"):
        playbook = load_playbook(root / "playbooks" / f"{name}.toml")
        plan = build(inventory, playbook, resolve(inventory, "eu-web"), Path(name))
        assert plan.steps
