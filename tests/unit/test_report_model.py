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
