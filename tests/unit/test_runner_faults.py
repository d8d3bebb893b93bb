"""The runner never lets an exception escape, retries only transient faults, and reads results by kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery.config.base import Strict
from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook
from recovery.config.targets import resolve
from recovery.engine import registry, runstore, state
from recovery.engine.access import Access, AccessError, Channel, oob_driver
from recovery.engine.control import execute
from recovery.engine.plan import build
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs
from recovery.transport.result import TransportError

ROOT = Path(__file__).resolve().parents[2]


class NoParams(Strict):
    pass


class Counted(StepOutputs):
    attempts: int = 0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def event(self, step: str, host: str, status: str, detail: str = "") -> None:
        self.events.append((step, host, status, detail))

    def acknowledge(self, prompt: str) -> bool:
        return True


def kind(name: str, apply: Any, check: Any = None, outputs: type[StepOutputs] = registry.NoOutputs,
         needs: tuple[str, ...] = ()) -> StepKind:
    attributes = {"kind": name, "Params": NoParams, "Outputs": outputs, "needs": needs,
                  "apply": lambda self, ctx: apply(ctx)}
    if check is not None:
        attributes["check"] = lambda self, ctx: check(ctx)
    return type(f"Test{name.title()}", (StepKind,), attributes)()


def inventory(*names: str) -> Inventory:
    host = {"address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"}}
    return Inventory.model_validate({"hosts": {n: host for n in names}, "groups": {"web": list(names)}})


def run_plan(tmp_path: Path, kinds: list[StepKind], steps: list[dict[str, Any]], monkeypatch,
             hosts: tuple[str, ...] = ("h1", "h2"), serial: int = 2):
    for step_kind in kinds:
        monkeypatch.setitem(registry._KINDS, step_kind.kind, step_kind)
        if step_kind.Outputs is not registry.NoOutputs:
            monkeypatch.setitem(registry._PRODUCERS, step_kind.Outputs, step_kind.kind)
    inv = inventory(*hosts)
    (tmp_path / "inv.toml").write_text("")
    (tmp_path / "pb.toml").write_text("")
    book = Playbook.model_validate({"order": {"serial": serial}, "steps": steps})
    plan = build(inv, book, resolve(inv, "web"), tmp_path / "pb.toml")
    run = runstore.create(tmp_path / "runs", "web", tmp_path / "inv.toml", tmp_path / "pb.toml")
    ui = Recorder()
    outcome = execute(run, plan, inv, ui, "run_started")
    return outcome, run, ui


def test_anything_raised_in_check_or_apply_is_that_hosts_journaled_failure(tmp_path, monkeypatch):
    def broken_check(ctx: StepContext) -> Check:
        if ctx.host == "h1":
            raise AttributeError("'int' object has no attribute 'split'")  # a reply of the wrong shape
        return Check.NOT_DONE

    def apply(ctx: StepContext) -> registry.NoOutputs:
        if ctx.host == "h2":
            raise KeyError("datasets")
        return registry.NoOutputs()

    outcome, run, ui = run_plan(tmp_path, [kind("wobbly", apply, broken_check), kind("after", lambda c: registry.NoOutputs())],
                                [{"kind": "wobbly"}, {"kind": "after"}], monkeypatch)
    assert outcome.status == "failed"
    records = run.journal.records()
    assert records[-1].event == "run_finished" and run.journal.verify() == []
    errors = {r.host: r.data["error"] for r in records if r.event == "step_failed"}
    assert errors == {"h1": "check failed: internal error: AttributeError: 'int' object has no attribute 'split'",
                      "h2": "internal error: KeyError: 'datasets'"}
    assert (run.dir / "report.md").is_file()


def test_a_block_whose_hosts_all_failed_before_is_simply_empty(tmp_path, monkeypatch):
    def down(ctx: StepContext) -> registry.NoOutputs:
        raise StepFailed(f"{ctx.host}: BMC unreachable")

    outcome, run, _ = run_plan(tmp_path, [kind("cut", down), kind("after", lambda c: registry.NoOutputs())],
                               [{"kind": "cut", "serial": 10}, {"kind": "after", "serial": 1}], monkeypatch)
    assert outcome.status == "failed" and outcome.failed == 2
    assert run.journal.records()[-1].event == "run_finished"


def test_only_transient_faults_are_retried(tmp_path, monkeypatch):
    tries: dict[str, int] = {"h1": 0, "h2": 0}

    def flaky(ctx: StepContext) -> Counted:
        tries[ctx.host] += 1
        if ctx.host == "h1" and tries["h1"] < 3:
            raise TransportError("h1: connection reset")  # transient: a retry may help
        if ctx.host == "h2":
            raise StepFailed("h2: tools differ from the golden manifest")  # never retried
        return Counted(attempts=tries[ctx.host])

    outcome, run, _ = run_plan(tmp_path, [kind("flaky", flaky, outputs=Counted)],
                               [{"kind": "flaky", "retries": 4, "retry_wait": 0.01}], monkeypatch)
    assert tries == {"h1": 3, "h2": 1}
    pairs = state.fold(run.journal.records())
    assert pairs[("flaky", "h1")].outputs == {"already_done": False, "attempts": 3}
    assert pairs[("flaky", "h2")].state == state.FAILED


def test_a_step_reads_the_result_it_needs_by_kind_not_by_the_steps_name(tmp_path, monkeypatch):
    seen: list[int] = []

    def consume(ctx: StepContext) -> registry.NoOutputs:
        seen.append(ctx.output(Counted).attempts)
        return registry.NoOutputs()

    producer = kind("produce", lambda ctx: Counted(attempts=7), outputs=Counted)
    outcome, _, _ = run_plan(tmp_path, [producer, kind("consume", consume, needs=("produce",))],
                             [{"kind": "produce", "name": "a-name-chosen-by-the-playbook"}, {"kind": "consume"}],
                             monkeypatch)
    assert outcome.status == "done" and seen == [7, 7]


def test_a_check_that_finds_the_work_done_records_the_kinds_result(tmp_path, monkeypatch):
    done = kind("settled", lambda ctx: Counted(attempts=1), check=lambda ctx: Check.DONE, outputs=Counted)
    _, run, _ = run_plan(tmp_path, [done], [{"kind": "settled"}], monkeypatch)
    assert state.fold(run.journal.records())[("settled", "h1")].outputs == {"already_done": True, "attempts": 0}


def test_the_channel_a_host_was_moved_to_is_reopened_from_the_journal(tmp_path):
    run = runstore.create(tmp_path / "runs", "web", ROOT / "inventory.toml", ROOT / "playbooks/recover.toml")
    first = Access(inventory("h1", "h2"), run.journal)
    first("h1").move(Channel.CONSOLE, session=None)
    first.close()
    again = Access(inventory("h1", "h2"), run.journal)  # a resumed run, in a new process
    assert again("h1").channel is Channel.CONSOLE and again("h2").channel is Channel.SSH
    assert [(r.event, r.host, r.data) for r in run.journal.records()] == [
        ("channel_changed", "h1", {"channel": "console"})]


def test_a_lab_bmc_without_a_pinned_key_is_a_clear_error(tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = Inventory.model_validate({"hosts": {"h1": {
        "address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"},
        "oob": {"driver": "lab", "address": "127.0.0.1", "machine": "h1",
                "ssh": {"port": 2222, "key": "/k", "known_hosts": str(empty)}}}}})
    with pytest.raises(AccessError, match="h1: no pinned host key for the lab BMC at 127.0.0.1:2222"):
        oob_driver(inv, "h1")


def test_plan_and_help_do_not_load_the_lab():
    probe = ("import sys\nfrom recovery.cli import main\n"
             "for args in (['--help'], ['plan', 'eu-web', '--json']):\n"
             "    try:\n        main(args)\n    except SystemExit as exit:\n        assert not exit.code, exit.code\n"
             "print(sorted(m for m in sys.modules if m.startswith('recovery.lab')))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "rehearse" in result.stdout and "lab" in result.stdout  # listed in --help all the same


def test_a_defect_outside_any_step_still_ends_the_run_journaled(tmp_path, monkeypatch):
    class BrokenUI(Recorder):
        def event(self, step: str, host: str, status: str, detail: str = "") -> None:
            if status == "done":
                raise RuntimeError("the progress display broke")

    monkeypatch.setitem(registry._KINDS, "fine", kind("fine", lambda ctx: registry.NoOutputs()))
    inv = inventory("h1")
    (tmp_path / "inv.toml").write_text("")
    (tmp_path / "pb.toml").write_text("")
    plan = build(inv, Playbook.model_validate({"steps": [{"kind": "fine"}]}), resolve(inv, "web"), tmp_path / "pb.toml")
    run = runstore.create(tmp_path / "runs", "web", tmp_path / "inv.toml", tmp_path / "pb.toml")
    outcome = execute(run, plan, inv, BrokenUI(), "run_started")
    events = [r.event for r in run.journal.records()]
    assert outcome.status == "stopped"
    assert events[-2:] == ["run_defect", "run_finished"]
    assert "internal error: RuntimeError: the progress display broke" in (run.dir / "report.md").read_text()
