"""`contain` through `recover`: hosts powered off over real IPMI and Redfish BMCs on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recovery.lab.ipmi_bmc import LabIpmiBmc
from recovery.lab.redfish_bmc import LabRedfish
from recovery.oob.base import PowerState
from recovery.oob.ipmi import IpmiDriver, IpmiEndpoint
from recovery.oob.redfish import RedfishDriver, RedfishEndpoint
from tests.support.project import recover

pytestmark = pytest.mark.integration

QEMU = "qemu-system-x86_64"
TINY_VM = [QEMU, "-machine", "q35", "-accel", "tcg", "-m", "64", "-display", "none", "-nodefaults", "-nic", "none"]
IPMI_PASSWORD, REDFISH_PASSWORD = "ipmi-Secret-4821", "redfish-Secret-7730"


@pytest.fixture
def bmcs():
    if not shutil.which(QEMU):
        pytest.fail(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    with LabIpmiBmc(TINY_VM, "admin", IPMI_PASSWORD) as ipmi, \
            LabRedfish("us-web", "admin", REDFISH_PASSWORD) as redfish:
        yield ipmi, redfish


def write_project(tmp_path: Path, ipmi: LabIpmiBmc, redfish: LabRedfish) -> None:
    ssh = '[hosts.{0}.ssh]\nkey = "/k"\nhost_key = "ssh-ed25519 AAAA"\n'
    (tmp_path / "inventory.toml").write_text(f"""
[hosts.eu-web]
address = "127.0.0.1"
{ssh.format("eu-web")}
[hosts.eu-web.oob]
driver = "ipmi"
address = "{ipmi.host}"
port = {ipmi.port}
username = "admin"
password = "env:EU_WEB_BMC_PASSWORD"

[hosts.us-web]
address = "127.0.0.1"
{ssh.format("us-web")}
[hosts.us-web.oob]
driver = "redfish"
url = "{redfish.url}"
system = "{redfish.system_id}"
username = "admin"
password = "env:US_WEB_BMC_PASSWORD"

[groups]
web = ["eu-web", "us-web"]
""")
    (tmp_path / "pb.toml").write_text('[order]\nserial = 2\n[[steps]]\nkind = "contain"\nconfirm = true\ntimeout = 30\n')


ENV = {"EU_WEB_BMC_PASSWORD": IPMI_PASSWORD, "US_WEB_BMC_PASSWORD": REDFISH_PASSWORD}


def run(tmp_path: Path, env: dict[str, str] = ENV):
    return recover("web", "--inventory", "inventory.toml", "--playbook", "pb.toml", "--runs-dir", "runs",
                   "--yes", cwd=tmp_path, env=env, timeout=120)


def test_contain_powers_off_over_ipmi_and_redfish(bmcs, tmp_path):
    ipmi, redfish = bmcs
    write_project(tmp_path, ipmi, redfish)
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ipmi_driver = IpmiDriver(IpmiEndpoint(host="eu-web", address=ipmi.host, port=ipmi.port,
                                          username="admin", password=IPMI_PASSWORD))
    redfish_driver = RedfishDriver(RedfishEndpoint(
        host="us-web", address="127.0.0.1", port=redfish.port, scheme="http", username="admin",
        password=REDFISH_PASSWORD, system_id=redfish.system_id))
    assert ipmi_driver.power_state() is PowerState.OFF
    assert redfish_driver.power_state() is PowerState.OFF
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert IPMI_PASSWORD.encode() not in data and REDFISH_PASSWORD.encode() not in data

    second = run(tmp_path)  # a new run finds both already off and changes nothing
    assert second.returncode == 0
    assert second.stdout.count("already done (checked)") == 2


def test_missing_bmc_password_stops_before_anything(bmcs, tmp_path):
    ipmi, redfish = bmcs
    write_project(tmp_path, ipmi, redfish)
    result = run(tmp_path, env={"US_WEB_BMC_PASSWORD": REDFISH_PASSWORD})
    assert result.returncode == 2
    assert "inventory.toml: hosts.eu-web.oob.password: environment variable EU_WEB_BMC_PASSWORD is not set" in result.stderr
    assert not (tmp_path / "runs").exists()
