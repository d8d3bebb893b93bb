"""The sweep's verdicts and their journaled shape: a host that cannot be swept is never taken for clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery.config.inventory import Inventory
from recovery.config.playbook import Step
from recovery.config.targets import resolve
from recovery.engine.registry import StepContext, StepFailed, StepRecord
from recovery.steps.diff import Change, DatasetDiff
from recovery.steps.sweep import (
    SweepOutputs,
    SweepParams,
    SweepStep,
    golden_snapshot,
    judged,
    restored_snapshots,
    sweep_host,
)
from recovery.steps.zfs_host import Listing
from recovery.transport.result import TransportError
from recovery.zfs.client import Dataset

MANIFEST = {"captured": "2026-11-30T10:00:00Z", "tools": {"/usr/sbin/zfs": "aa"}, "files": {},
            "datasets": {"tank/www": {"snapshot": "tank/www@golden-1", "snapshot_guid": 7, "createtxg": 20}}}


def inventory() -> Inventory:
    host = {"address": "127.0.0.1", "datasets": ["tank/www"], "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"}}
    return Inventory.model_validate({
        "hosts": {"eu-web": host, "us-web": host},
        "groups": {"web": ["eu-web", "us-web"]},
        "services": {"www": {"hosts": ["web"], "traffic": {"haproxy": {
            "socket": "/nonexistent", "backend": "web", "servers": ["eu-web", "us-web"]}}}},
    })


class Unreachable:
    def session(self) -> Any:
        raise TransportError("us-web: connect to 127.0.0.1:2222: connection refused")


def context(store: Path, target: str = "eu-web") -> StepContext:
    inv = inventory()
    return StepContext(run_id="R1", run_dir=store, step=Step.model_validate({"kind": "sweep"}),
                       params=SweepParams(store=str(store)), host=None, inventory=inv, target=resolve(inv, target),
                       access=lambda host: Unreachable(), note=lambda text: None, acknowledge=lambda text: True)


def indicator(path: str) -> Change:
    return Change(path=path, change="+", type="F", verdict="indicator", rule="web-script")


def test_indicators_make_a_host_dirty_and_are_listed() -> None:
    diffs = {"tank/www": DatasetDiff(golden="tank/www@golden-1", counts={"indicator": 2, "benign": 5},
                                     findings=[indicator("/srv/www/cgi-bin/a.cgi"), indicator("/srv/www/b.php")])}
    swept = judged("2026-11-30T10:00:00Z", diffs, [], ["/etc/ssh/sshd_config: changed"], strict=False)
    assert swept.verdict == "dirty" and swept.indicators == 2
    assert swept.reason == "2 indicators since golden (/srv/www/cgi-bin/a.cgi, /srv/www/b.php)"
    assert swept.files_differing == ["/etc/ssh/sshd_config: changed"]


def test_changed_tools_are_dirty_changed_files_only_when_strict() -> None:
    clean = {"tank/www": DatasetDiff(golden="g", counts={"benign": 3})}
    assert judged("t", clean, [], ["/etc/x: changed"], strict=False).verdict == "clean"
    assert judged("t", clean, [], ["/etc/x: changed"], strict=True).reason == "1 critical files differ from golden"
    tools = judged("t", clean, ["/usr/sbin/zfs: changed"], [], strict=False)
    assert tools.verdict == "dirty" and tools.reason == "tools differ from golden (/usr/sbin/zfs: changed)"


def test_no_golden_manifest_is_unsweepable_not_clean(tmp_path: Path) -> None:
    swept = sweep_host(context(tmp_path), "us-web")
    assert swept.verdict == "unsweepable"
    assert "no golden manifest" in swept.reason and "recover golden us-web" in swept.reason


def test_an_unreachable_host_is_unsweepable_with_the_transport_error(tmp_path: Path) -> None:
    (tmp_path / "us-web").mkdir()
    (tmp_path / "us-web" / "golden-20261130T100000Z.json").write_text(json.dumps(MANIFEST))
    swept = sweep_host(context(tmp_path), "us-web")
    assert swept.verdict == "unsweepable" and "connection refused" in swept.reason


def listing(guid: int) -> Listing:
    return Listing((Dataset("tank/www", "filesystem", 1, 10, 0, None, None, "/srv/www"),
                    Dataset("tank/www@golden-1", "snapshot", guid, 20, 0, None, None, None)))


def test_the_golden_snapshot_must_be_the_one_captured() -> None:
    assert golden_snapshot(listing(7), MANIFEST, "tank/www") == "tank/www@golden-1"
    with pytest.raises(StepFailed, match="not the snapshot captured as golden"):
        golden_snapshot(listing(8), MANIFEST, "tank/www")
    with pytest.raises(StepFailed, match="not in the golden manifest"):
        golden_snapshot(listing(7), MANIFEST, "tank/home")


def test_the_sweep_covers_the_service_hosts_beside_the_target_and_journals_their_shape(tmp_path: Path) -> None:
    outputs = SweepStep().apply(context(tmp_path))
    assert list(outputs.hosts) == ["us-web"]  # eu-web is the target: restored, not swept
    assert SweepOutputs.model_validate(json.loads(outputs.model_dump_json())) == outputs
    assert SweepStep().apply(context(tmp_path, target="web")).hosts == {}  # every host is a target


def test_a_restored_target_is_looked_at_again_since_the_clean_snapshot_it_serves() -> None:
    restore = StepRecord("restore", "restore", "done", {"datasets": {
        "tank/www": {"clean": "tank/www@auto-2", "quarantine": "q", "evidence": "e"}}})
    older = StepRecord("restore", "restore", "done", {"datasets": {
        "tank/www": {"clean": "tank/www@auto-1", "quarantine": "q", "evidence": "e"}}})
    assert restored_snapshots([older, restore]) == {"tank/www": "tank/www@auto-2"}
    assert restored_snapshots([StepRecord("restore", "restore", "failed", {})]) == {}


def test_a_restored_target_that_cannot_be_looked_at_again_is_unsweepable(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.history = lambda host: [StepRecord("restore", "restore", "done", {"datasets": {
        "tank/www": {"clean": "tank/www@auto-2", "quarantine": "q", "evidence": "e"}}})]
    outputs = SweepStep().apply(ctx)
    assert outputs.restored["eu-web"].verdict == "unsweepable"
    assert "connection refused" in outputs.restored["eu-web"].reason


def test_indicators_since_the_restore_say_what_to_contain() -> None:
    diffs = {"tank/www": DatasetDiff(golden="tank/www@auto-2", counts={"indicator": 1},
                                     findings=[indicator("/srv/www/cgi-bin/a.cgi")])}
    swept = judged("", diffs, [], [], strict=False, since="its restore")
    assert swept.reason == "1 indicators since its restore (/srv/www/cgi-bin/a.cgi)"


def test_a_sweep_looks_at_what_it_is_told_and_keeps_what_earlier_sweeps_found(tmp_path: Path) -> None:
    """`restored` first (the recovered host goes back at once), `beside` after it: the second sweep's
    result still holds the first one's look at the restored host, so a `return` after it weighs both."""
    ctx = context(tmp_path)
    ctx.history = lambda host: [StepRecord("restore", "restore", "done", {"datasets": {
        "tank/www": {"clean": "tank/www@auto-2", "quarantine": "q", "evidence": "e"}}})]
    ctx.params = SweepParams(store=str(tmp_path), look_at="restored")
    first = SweepStep().apply(ctx)
    assert list(first.restored) == ["eu-web"] and first.hosts == {}
    ctx.params = SweepParams(store=str(tmp_path), look_at="beside")
    ctx.outputs = {"sweep": first.model_dump(mode="json")}
    second = SweepStep().apply(ctx)
    assert list(second.hosts) == ["us-web"] and second.restored == first.restored
    said = SweepStep().foresee(ctx.inventory, ctx.target, ("restore",), SweepParams(look_at="restored"))
    assert said == {"eu-web": "looked at again over SSH: zfs diff from the restored snapshot -> live"}
