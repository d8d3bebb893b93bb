"""`boot_normal`: a host whose SSH stays silent after a power cycle gets another, up to `power_cycles`."""

from __future__ import annotations

from pathlib import Path

import pytest

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery.config.inventory import Inventory
from recovery.config.playbook import Step
from recovery.config.targets import resolve
from recovery.engine.access import Channel
from recovery.engine.registry import StepContext, StepFailed
from recovery.oob.base import BootMode
from recovery.steps.boot import BootNormalParams, BootNormalStep
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused


class Driver:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def boot_once(self, mode: BootMode) -> None:
        self.calls.append(f"boot_once {mode.value}")

    def power_cycle(self) -> None:
        self.calls.append("power_cycle")


class Session:
    def __init__(self, host: Host) -> None:
        self.host = host

    def open(self) -> Session:
        if self.host.silent_cycles >= self.host.oob.calls.count("power_cycle"):
            raise self.host.error
        return self


class Host:
    """The host's access as `boot_normal` uses it: SSH answers only after ``silent_cycles`` silent cycles."""

    def __init__(self, silent_cycles: int, error: TransportError | None = None) -> None:
        self.silent_cycles = silent_cycles
        self.error = error or TransportError("eu-web: cannot connect to 127.0.0.1:2222: No existing session",
                                             transient=True)
        self.oob = Driver()
        self.channel = Channel.CONSOLE

    def driver(self) -> Driver:
        return self.oob

    def move(self, channel: Channel, session: object = None) -> None:
        self.channel = channel

    def reset(self) -> None:
        pass

    def session(self) -> Session:
        return Session(self)


def run(host: Host, power_cycles: int, tmp_path: Path) -> tuple[list[str], list[str], str | None]:
    """The step's power-control calls, its notes and its failure (None when SSH answered)."""
    inv = Inventory.model_validate({"hosts": {"eu-web": {
        "address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"}}}})
    notes: list[str] = []
    ctx = StepContext(run_id="R1", run_dir=tmp_path, step=Step.model_validate({"kind": "boot_normal", "timeout": 0.2}),
                      params=BootNormalParams(ssh_wait=0.05, power_cycles=power_cycles), host="eu-web",
                      inventory=inv, target=resolve(inv, "eu-web"), access=lambda name: host,  # type: ignore[arg-type,return-value]
                      note=notes.append, acknowledge=lambda text: True)
    try:
        BootNormalStep().apply(ctx)
    except StepFailed as exc:
        return host.oob.calls, notes, str(exc)
    return host.oob.calls, notes, None


def test_a_host_that_answers_after_the_first_cycle_is_cycled_once(tmp_path: Path) -> None:
    calls, notes, failed = run(Host(silent_cycles=0), 2, tmp_path)
    assert failed is None
    assert calls == ["boot_once normal", "power_cycle"]
    assert len(notes) == 1 and "multi-user, SSH answers" in notes[0]


def test_a_host_silent_after_one_cycle_is_cycled_again_and_the_note_says_why(tmp_path: Path) -> None:
    calls, notes, failed = run(Host(silent_cycles=1), 2, tmp_path)
    assert failed is None
    assert calls == ["boot_once normal", "power_cycle"] * 2
    assert "did not answer SSH within 0.2 s" in notes[0] and "No existing session" in notes[0]
    assert notes[0].endswith("power cycle 2 of 2")


def test_a_host_silent_after_every_cycle_fails_the_step_naming_the_host(tmp_path: Path) -> None:
    calls, notes, failed = run(Host(silent_cycles=5), 2, tmp_path)
    assert calls == ["boot_once normal", "power_cycle"] * 2
    assert failed is not None and failed.startswith("eu-web did not answer SSH within 0.2 s")
    assert len(notes) == 1


def test_a_refused_host_key_is_not_mended_by_another_cycle(tmp_path: Path) -> None:
    host = Host(silent_cycles=5, error=HostKeyRefused("eu-web: host key CHANGED"))
    with pytest.raises(HostKeyRefused):
        run(host, 3, tmp_path)
    assert host.oob.calls == ["boot_once normal", "power_cycle"]


def test_host_output_in_the_error_reaches_the_note_without_terminal_escapes(tmp_path: Path) -> None:
    host = Host(silent_cycles=1, error=TransportError("eu-web: banner \x1b]0;owned\x07 garbage", transient=True))
    _, notes, failed = run(host, 2, tmp_path)
    assert failed is None and "\x1b" not in notes[0] and "\x07" not in notes[0]
