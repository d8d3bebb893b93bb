"""The lab BMC's grammar and key entry, and the lab driver's reading of its answers, without sshd or VMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.lab.bmc import authorized_key_entry
from recovery.lab.bmc_machines import MachineRecord, MachineStore, UnknownMachine
from recovery.lab.bmc_shell import Refused, dispatch
from recovery.oob.base import OobError, OobNotSupported, OobRefused, PowerState
from recovery.oob.lab import EXIT_FAILED, EXIT_REFUSED, EXIT_UNSUPPORTED, LabBmcEndpoint, LabDriver
from recovery.transport.result import Result

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKE+iFLQSsFrvPwDHlz+IP211wPsCXC0c2oYOXiqK+UG operator@desk"


@pytest.fixture
def store(tmp_path: Path) -> MachineStore:
    machines = MachineStore(tmp_path / "state")
    image = {name: str(tmp_path / name) for name in
             ("cache", "disk", "kernel", "initrd", "operator_key", "root_password_file", "log",
              "rescue_disk", "rescue_sha256", "root_pool")}  # fmt: skip
    machines.save(MachineRecord("web", str(tmp_path / "run"), {"key": "k", **image}, 1024, 2))
    return machines


def test_key_entry_forces_the_shell_from_loopback_only() -> None:
    entry = authorized_key_entry(KEY, Path("/srv/bmc state"), python="/opt/py/bin/python")
    assert entry == (
        "command=\"/opt/py/bin/python -m recovery.lab.bmc_shell '/srv/bmc state'\","
        'from="127.0.0.1",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty '
        f"{' '.join(KEY.split()[:2])} recovery-lab-bmc\n"
    )


@pytest.mark.parametrize(
    "request_",
    [
        "",
        "bash",
        "power",
        "power status",
        "power off web now",
        "boot once web",
        "power status web; bash",
        "console web extra",
        "power on web normal x",
    ],
)
def test_requests_outside_the_grammar_are_refused(store: MachineStore, request_: str) -> None:
    with pytest.raises(Refused, match="not a BMC command"):
        dispatch(store, request_)


def test_unknown_or_path_like_machines_are_refused(store: MachineStore) -> None:
    for name in ("db", "../web", "Web", "web/x"):
        with pytest.raises(UnknownMachine):
            dispatch(store, f"power status {name}")


def test_boot_once_is_recorded(store: MachineStore) -> None:
    assert dispatch(store, "boot once web single-user") == "next boot: single-user"
    assert store.load("web").next_boot == "single-user"
    with pytest.raises(Refused, match="unknown boot mode"):
        dispatch(store, "boot once web sideways")
    assert store.load("web").next_boot == "single-user"
    assert dispatch(store, "boot once web rescue") == "next boot: rescue"


def test_rescue_boot_without_a_recorded_sha256_is_refused_before_anything_starts(
    store: MachineStore, tmp_path: Path
) -> None:
    (tmp_path / "rescue_disk").write_bytes(b"rescue")
    dispatch(store, "boot once web rescue")
    with pytest.raises(Refused, match="rescue boot of web: no sha256 recorded"):
        dispatch(store, "power cycle web")
    with pytest.raises(Refused, match="no sha256 recorded"):
        dispatch(store, "power on web rescue")
    assert dispatch(store, "power status web") == "off"
    assert store.load("web").next_boot == "rescue"


def test_a_machine_without_qemu_is_off(store: MachineStore) -> None:
    assert dispatch(store, "power status web") == "off"
    assert dispatch(store, "power off web forced") == "already off"


class _Answers:
    """An SSH session that answers every command with one Result, remembering what was asked."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.commands: list[str] = []

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        return self.result

    def close(self) -> None:
        pass


def _driver(code: int, stdout: bytes = b"", stderr: bytes = b"") -> tuple[LabDriver, _Answers]:
    host_key = " ".join(KEY.split()[:2])
    endpoint = LabBmcEndpoint(host="eu-web", address="127.0.0.1", port=2222, username="root",
                              key_file="/k", host_key=host_key, machine="web-1")  # fmt: skip
    driver = LabDriver(endpoint)
    answers = _Answers(Result(stdout, stderr, code, 0.1))
    driver._session = answers  # type: ignore[assignment]
    return driver, answers


def test_driver_speaks_the_grammar_and_reads_power_state() -> None:
    driver, answers = _driver(0, b"on\n")
    assert driver.power_state() is PowerState.ON
    driver.power_off(graceful=True)
    driver.power_off(graceful=False)
    assert answers.commands == ["power status web-1", "power off web-1 graceful", "power off web-1 forced"]


@pytest.mark.parametrize(
    ("code", "kind"), [(EXIT_REFUSED, OobRefused), (EXIT_UNSUPPORTED, OobNotSupported), (EXIT_FAILED, OobError)]
)
def test_exit_statuses_become_errors_naming_host_and_operation(code: int, kind: type[OobError]) -> None:
    driver, _ = _driver(code, stderr=b"refused: \x1b[2Jno")
    with pytest.raises(kind, match=r"eu-web: power cycle over lab BMC at 127.0.0.1:2222: refused: no") as caught:
        driver.power_cycle()
    assert "\x1b" not in str(caught.value)
