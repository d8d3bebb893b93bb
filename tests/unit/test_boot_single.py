"""`boot_single`: on the console it reached, one command says the system's state and imports the pools."""

from __future__ import annotations

from pathlib import Path

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery.config.inventory import Inventory
from recovery.config.playbook import Step
from recovery.config.targets import resolve
from recovery.engine.access import Channel
from recovery.engine.registry import StepContext, StepFailed
from recovery.oob.base import BootMode, PowerState
from recovery.steps.boot import BootSingleParams, BootSingleStep, first_command, system_and_pools
from recovery.transport.result import Result


class Console:
    def __init__(self, reply: Result) -> None:
        self.reply = reply
        self.commands: list[str] = []

    def open(self) -> Console:
        return self

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        return self.reply

    def close(self) -> None:
        pass


class Host:
    def __init__(self, reply: Result) -> None:
        self.console_session = Console(reply)
        self.power: list[str] = []
        self.channel = Channel.SSH

    def driver(self) -> Host:
        return self

    def boot_once(self, mode: BootMode) -> None:
        self.power.append(f"boot_once {mode.value}")

    def power_state(self) -> PowerState:
        return PowerState.OFF

    def power_on(self) -> None:
        self.power.append("power_on")

    def console(self, login_timeout: float, rescue: bool) -> Console:
        return self.console_session

    def move(self, channel: Channel, session: object = None) -> None:
        self.channel = channel


def booted(reply: Result, tmp_path: Path, **params: object) -> tuple[Host, object]:
    inv = Inventory.model_validate({"hosts": {"eu-web": {
        "address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"},
        "datasets": ["rpool/ROOT/debian", "tank/www"]}}})
    host = Host(reply)
    ctx = StepContext(run_id="R1", run_dir=tmp_path, step=Step.model_validate({"kind": "boot_single"}),
                      params=BootSingleParams.model_validate({"mode": "rescue", **params}), host="eu-web",
                      inventory=inv, target=resolve(inv, "eu-web"), access=lambda name: host,  # type: ignore[arg-type,return-value]
                      note=lambda text: None, acknowledge=lambda text: True)
    try:
        return host, BootSingleStep().apply(ctx)
    except StepFailed as exc:
        return host, exc


def test_one_console_command_says_the_state_and_imports_the_pools(tmp_path: Path) -> None:
    host, outputs = booted(Result(b"system-state degraded\nrpool\ntank\n", b"", 0, 1.0), tmp_path)
    assert host.power == ["boot_once rescue", "power_on"] and host.channel is Channel.RESCUE
    (command,) = host.console_session.commands
    assert command.startswith(first_command("")) and "zpool import -a -N -f -R /mnt/host" in command
    assert (outputs.system, outputs.pools) == ("degraded", ["rpool", "tank"])  # type: ignore[union-attr]


def test_a_failed_import_names_the_host_and_keeps_the_console(tmp_path: Path) -> None:
    host, failed = booted(Result(b"system-state running\n", b"cannot import 'tank': \x1b[2Jpool is busy", 1, 1.0),
                          tmp_path)
    assert isinstance(failed, StepFailed) and host.channel is Channel.RESCUE
    assert "eu-web: importing the ZFS pools on the console failed (exit 1)" in str(failed)
    assert "\x1b" not in str(failed)


def test_without_the_import_only_the_state_is_asked(tmp_path: Path) -> None:
    host, outputs = booted(Result(b"system-state maintenance\n", b"", 0, 1.0), tmp_path, import_pools=False)
    assert host.console_session.commands == [first_command("")]
    assert (outputs.system, outputs.pools) == ("maintenance", [])  # type: ignore[union-attr]


def test_a_state_line_missing_or_hostile_is_told_as_such() -> None:
    assert system_and_pools(b"") == ("?", [])
    assert system_and_pools(b"rpool\n") == ("?", [])
    assert system_and_pools(b"system-state \nrpool  tank\n") == ("?", ["rpool", "tank"])
