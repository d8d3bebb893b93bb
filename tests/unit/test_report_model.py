"""The report reads step results through their models: what ran, what never did, what to do next."""

from __future__ import annotations

from pathlib import Path

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery.config.load import load_inventory, load_playbook
from recovery.config.targets import resolve
from recovery.engine.journal import Journal
from recovery.engine.plan import build as build_plan
from recovery.report import model
from recovery.report.render import markdown

ROOT = Path(__file__).resolve().parents[2]


def test_single_user_boot_recommends_rotating_the_console_credential_and_unreached_return_is_said(tmp_path):
    inventory = load_inventory(ROOT / "inventory.toml")
    playbook = load_playbook(ROOT / "playbooks/recover.toml")
    plan = build_plan(inventory, playbook, resolve(inventory, "eu-web"), ROOT / "playbooks/recover.toml")
    journal = Journal(tmp_path / "journal.sqlite")
    journal.append("run_started", operator="sre", target="eu-web", hosts=["eu-web"])
    journal.append("step_started", "boot_single", "eu-web", kind="boot_single")
    journal.append("step_succeeded", "boot_single", "eu-web",
                   outputs={"already_done": False, "mode": "single-user", "system": "maintenance",
                            "pools": ["tank"], "seconds": 20.0})
    journal.append("step_succeeded", "diff", "eu-web", outputs={"datasets": {"tank/www": "not a dataset diff"}})
    journal.append("step_unreached", "return", "*", meaning="traffic stays on the known-good mirror")
    journal.append("run_finished", status="stopped", done=1, failed=0, skipped=0)
    report = model.build("r1", "eu-web", plan, journal.records(), journal.verify())
    assert report.recommendations == [
        "eu-web: rotate the console credential (hosts.eu-web.root_password): it was typed into the compromised "
        "host's own sulogin in single-user mode, where its own binaries ran"]
    assert report.unreached == ["return: traffic stays on the known-good mirror"]
    assert "eu-web: the journaled result of a `diff` step has the wrong shape" in report.failures
    text = markdown(report)
    assert "## Recommendations" in text and "**Not reached:** return: traffic stays on the known-good mirror" in text


def _plan(tmp_path, steps: str):
    (tmp_path / "pb.toml").write_text('[order]\nserial = 1\npriority = [["us-web"]]\n' + steps)
    inventory = load_inventory(ROOT / "inventory.toml")
    playbook = load_playbook(tmp_path / "pb.toml")
    return build_plan(inventory, playbook, resolve(inventory, "web"), tmp_path / "pb.toml")


PRESERVE_DIFF = '[[steps]]\nkind = "preserve"\nparams = {}\n[[steps]]\nkind = "diff"\nparams = {}\n'


def test_a_section_whose_steps_never_ran_says_not_run_and_hosts_come_in_run_order(tmp_path):
    plan = _plan(tmp_path, PRESERVE_DIFF)
    journal = Journal(tmp_path / "journal.sqlite")
    journal.append("run_started", operator="sre", target="web", hosts=list(plan.target.hosts))
    journal.append("step_started", "preserve", "us-web", kind="preserve")
    journal.append("step_failed", "preserve", "us-web", error="pool tank is not imported")
    journal.append("step_started", "preserve", "eu-web", kind="preserve")
    journal.append("step_failed", "preserve", "eu-web", error="pool tank is not imported")
    journal.append("run_finished", status="failed", done=0, failed=2, skipped=0)
    report = model.build("r1", "web", plan, journal.records(), journal.verify())
    assert list(report.hosts)[:2] == ["us-web", "eu-web"]  # the plan's priority, not the alphabet
    text = markdown(report)
    assert "## Indicators of compromise\n\nNot run: no `diff` or `sweep` step finished." in text
    assert "## What was restored\n\nNot run: the playbook has no `restore` step." in text
    assert text.index("## What did not work") < text.index("## Hosts")
    assert "(none)" not in text


def test_found_nothing_is_not_the_same_as_not_run(tmp_path):
    plan = _plan(tmp_path, PRESERVE_DIFF)
    journal = Journal(tmp_path / "journal.sqlite")
    for host in ("us-web", "eu-web"):
        journal.append("step_started", "diff", host, kind="diff")
    journal.append("step_succeeded", "diff", "us-web", outputs={"datasets": {}})
    journal.append("step_failed", "diff", "eu-web", error="zfs diff refused")
    text = markdown(model.build("r1", "web", plan, journal.records(), journal.verify()))
    assert "## Indicators of compromise\n\nNone found.\n\n- Not run on eu-web (`diff` or `sweep`" in text


def test_finished_is_the_last_run_finished_not_what_collectors_said_after_it(tmp_path):
    plan = _plan(tmp_path, PRESERVE_DIFF)
    journal = Journal(tmp_path / "journal.sqlite")
    journal.append("run_started", operator="sre", target="web", hosts=[])
    end = journal.append("run_finished", status="done", done=0, failed=0, skipped=0)
    journal.append("collector_delivery", collector="syslog 127.0.0.1:514", delivered=2, dropped=0, pending=0)
    report = model.build("r1", "web", plan, journal.records(), [])
    assert report.finished == end.ts and report.collectors[0]["delivered"] == 2
    journal.append("run_resumed", operator="sre", target="web", hosts=[])
    assert model.build("r1", "web", plan, journal.records(), []).finished is None


RETURN_AND_COPY = ('[[steps]]\nkind = "divert"\nparams = {}\n'
                   '[[steps]]\nkind = "preserve"\nparams = { copy_streams = false }\n'
                   '[[steps]]\nkind = "return"\nparams = {}\n'
                   '[[steps]]\nkind = "preserve"\nname = "evidence-copy"\nparams = {}\n')


def _decision(admitted: bool) -> dict:
    return {"already_done": False, "channels": {}, "hosts": {
        "eu-web": {"admitted": admitted, "reason": "restored and verified in this run" if admitted else "failed"}}}


def test_the_rto_ends_when_traffic_is_back_not_when_the_evidence_copied_after_it_is_in(tmp_path):
    plan = _plan(tmp_path, RETURN_AND_COPY)
    journal = Journal(tmp_path / "journal.sqlite")
    start = journal.append("run_started", operator="sre", target="web", hosts=list(plan.target.hosts))
    back = journal.append("step_succeeded", "return", "*", outputs=_decision(admitted=True))
    journal.append("step_succeeded", "evidence-copy", "eu-web", outputs={"snapshots": {}})
    end = journal.append("run_finished", status="done", done=3, failed=0, skipped=0)
    report = model.build("r1", "web", plan, journal.records(), [])
    assert report.rto == back.ts - start.ts and report.run_time == end.ts - start.ts
    assert report.run_time > report.rto
    assert f"Recovery time (RTO, to traffic back): {report.rto:.1f} s" in markdown(report)


def test_no_rto_while_return_admitted_no_recovered_host(tmp_path):
    plan = _plan(tmp_path, RETURN_AND_COPY)
    journal = Journal(tmp_path / "journal.sqlite")
    journal.append("run_started", operator="sre", target="web", hosts=list(plan.target.hosts))
    journal.append("step_succeeded", "return", "*", outputs=_decision(admitted=False))
    journal.append("run_finished", status="failed", done=1, failed=1, skipped=0)
    report = model.build("r1", "web", plan, journal.records(), [])
    assert report.rto is None and report.run_time is not None
    assert "Recovery time (RTO, to traffic back): traffic not back on a recovered host" in markdown(report)


TWO_RETURNS = ('[[steps]]\nkind = "divert"\nparams = {}\n'
               '[[steps]]\nkind = "return"\nparams = {}\n'
               '[[steps]]\nkind = "return"\nname = "return-beside"\nparams = {}\n')


def test_the_rto_is_the_first_return_of_a_target_not_a_later_one_for_the_hosts_beside_it(tmp_path):
    (tmp_path / "pb.toml").write_text('[order]\nserial = 1\n' + TWO_RETURNS)
    inventory = load_inventory(ROOT / "inventory.toml")
    plan = build_plan(inventory, load_playbook(tmp_path / "pb.toml"), resolve(inventory, "eu-web"),
                      tmp_path / "pb.toml")
    journal = Journal(tmp_path / "journal.sqlite")
    start = journal.append("run_started", operator="sre", target="eu-web", hosts=["eu-web"])
    beside_only = {"already_done": False, "channels": {}, "hosts": {
        "eu-web": {"admitted": False, "reason": "failed"}, "us-web": {"admitted": True, "reason": "swept clean"}}}
    journal.append("step_succeeded", "return", "*", outputs=beside_only)  # a beside host is not the recovery
    back = journal.append("step_succeeded", "return", "*", outputs=_decision(admitted=True))
    journal.append("step_succeeded", "return-beside", "*", outputs=_decision(admitted=True) | {"hosts": {
        "eu-web": {"admitted": True, "reason": "restored"}, "us-web": {"admitted": True, "reason": "swept clean"}}})
    report = model.build("r1", "eu-web", plan, journal.records(), [])
    assert report.rto == back.ts - start.ts
