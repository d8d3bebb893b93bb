"""The `recover` command line as an operator meets it, on the repository's own config."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from recovery.cli import main

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def config(*args: str) -> list[str]:
    return [*args, "--inventory", str(ROOT / "inventory.toml"),
            "--playbook", str(ROOT / "playbooks" / "recover.toml")]


def test_plan_json_resolves_a_host_with_its_service():
    result = invoke(*config("plan", "eu-web", "--json"))
    assert result.exit_code == 0
    plan = json.loads(result.output)
    assert plan["target"] == {"name": "eu-web", "kind": "host", "hosts": ["eu-web"], "services": ["www"]}
    assert plan["destructive"] is True
    divert = next(s for s in plan["steps"] if s["step"] == "divert")
    assert divert["host"] == "*" and divert["on_failure"] == "stop"


def test_group_target_orders_hosts_one_by_one():
    plan = json.loads(invoke(*config("plan", "web", "--json")).output)
    assert [["eu-web"], ["us-web"]] in plan["batches"]


def test_unknown_target_is_a_usage_error():
    result = CliRunner().invoke(main, config("plan", "eu-wbe"))
    assert result.exit_code == 2
    assert "'eu-wbe' names no host, group or service in the inventory" in result.stderr


def test_config_error_names_file_and_key(tmp_path):
    bad = tmp_path / "inventory.toml"
    bad.write_text((ROOT / "inventory.toml").read_text().replace('driver = "lab"', 'driver = "ipmii"', 1))
    result = CliRunner().invoke(
        main, ["plan", "eu-web", "--inventory", str(bad), "--playbook", str(ROOT / "playbooks/recover.toml")])
    assert result.exit_code == 2
    assert f"{bad}: hosts.eu-web.oob.driver: unknown driver 'ipmii' (expected one of: lab, ipmi, redfish, libvirt)" in result.stderr


def test_run_whose_needs_are_not_met_is_refused_before_anything_runs(tmp_path):
    playbook = tmp_path / "pb.toml"
    playbook.write_text('[[steps]]\nkind = "restore"\nparams = {}\n')
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["eu-web", "--yes", "--runs-dir", str(runs), "--inventory",
                                       str(ROOT / "inventory.toml"), "--playbook", str(playbook)])
    assert result.exit_code == 2
    assert f"{playbook}: steps[0].kind: `restore` needs the result of a `find_clean` step before it" in result.stderr
    assert not runs.exists()


def test_schema_is_written(tmp_path):
    assert invoke("schema", "--out", str(tmp_path)).exit_code == 0
    schema = json.loads((tmp_path / "inventory.schema.json").read_text())
    assert "hosts" in schema["properties"]
    assert json.loads((tmp_path / "playbook.schema.json").read_text())["title"] == "recovery playbook"


def test_committed_schema_is_current(tmp_path):
    invoke("schema", "--out", str(tmp_path))
    for name in ("inventory", "playbook"):
        assert (tmp_path / f"{name}.schema.json").read_text() == (ROOT / "schema" / f"{name}.schema.json").read_text()


def test_plan_says_who_is_swept_and_who_stays_out():
    plan = json.loads(invoke(*config("plan", "eu-web", "--json")).output)
    assert plan["foreseen"]["recheck"] == {
        "eu-web": "looked at again over SSH: zfs diff from the restored snapshot -> live"}
    assert plan["foreseen"]["sweep"] == {
        "us-web": "swept read-only over SSH (zfs diff golden -> live, tools, critical files)"}
    assert plan["foreseen"]["return"]["us-web"] == (
        "back only if a sweep before this step found it clean and it is healthy; dirty or unswept stays out "
        "(`recover us-web`)")
    assert plan["foreseen"]["return"]["eu-web"].startswith("back if restored and verified in this run")
    shown = " ".join(invoke(*config("plan", "eu-web")).output.split())
    assert "sweep: us-web — swept read-only over SSH" in shown
    assert "return: us-web — back only if a sweep before this step found it clean" in shown
    whole = json.loads(invoke(*config("plan", "web", "--json")).output)["foreseen"]
    assert set(whole["recheck"]) == {"eu-web", "us-web"}  # both targets: looked at again after their restore
    assert all(said.startswith("looked at again") for said in whole["recheck"].values())
    assert not whole.get("sweep")  # no host beside them
    assert set(whole["return"]) == {"eu-web", "us-web"}


def test_without_a_sweep_the_plan_says_the_other_hosts_stay_out(tmp_path):
    playbook = tmp_path / "pb.toml"
    playbook.write_text('[[steps]]\nkind = "divert"\n[[steps]]\nkind = "return"\n')
    result = invoke("plan", "eu-web", "--json", "--inventory", str(ROOT / "inventory.toml"),
                    "--playbook", str(playbook))
    foreseen = json.loads(result.output)["foreseen"]["return"]
    assert foreseen["us-web"] == "stays out: no sweep in this playbook (`recover us-web`, or `--admit us-web`)"
    assert foreseen["eu-web"] == "stays out: this playbook does not restore and verify it (`--admit eu-web`)"


def test_admit_needs_a_reason_and_a_host_of_the_service_before_any_run_starts(tmp_path):
    runs = tmp_path / "runs"
    for extra, expected in ((["--admit", "us-web"], "--admit needs --why TEXT"),
                            (["--admit", "people", "--why", "x"], "--admit people: not a host of a service")):
        result = CliRunner().invoke(main, config("eu-web", "--yes", "--runs-dir", str(runs), *extra))
        assert result.exit_code == 2, result.output
        assert expected in result.stderr
    assert not runs.exists()


def test_a_mistyped_command_is_not_taken_for_a_target():
    result = CliRunner().invoke(main, ["stauts", "--inventory", str(ROOT / "inventory.toml")])
    assert result.exit_code == 2
    assert "no command 'stauts' and no target of that name; did you mean `recover status`?" in result.output


def test_a_target_that_looks_like_a_command_is_still_a_target(tmp_path):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text((ROOT / "inventory.toml").read_text().replace("[groups]", '[groups]\nplans = ["eu-web"]', 1))
    result = CliRunner().invoke(main, ["plans", "--inventory", str(inventory), "--playbook",
                                       str(ROOT / "playbooks/recover.toml")], input="n\n")
    assert "did you mean" not in result.output
    assert "Plan for plans" in result.output


def test_the_playbook_schema_is_as_strict_as_the_planner():
    schema = json.loads((ROOT / "schema" / "playbook.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for playbook in [*(ROOT / "playbooks").glob("*.toml"), ROOT / "vagrant" / "recover-ssh.toml"]:
        assert list(validator.iter_errors(tomllib.loads(playbook.read_text()))) == [], playbook
    unknown_kind = {"steps": [{"kind": "teleport"}]}
    misspelt = {"steps": [{"kind": "run", "params": {"comand": "true"}}]}
    missing = {"steps": [{"kind": "run", "params": {}}]}
    string_for_number = {"steps": [{"kind": "run", "timeout": "30", "params": {"command": "true"}}]}
    for bad in (unknown_kind, misspelt, missing, string_for_number):
        assert list(validator.iter_errors(bad)), bad


def test_limit_narrows_the_plan_and_json_and_no_color_are_there():
    inventory, playbook = str(ROOT / "inventory.toml"), str(ROOT / "playbooks/recover.toml")
    limited = json.loads(invoke("plan", "web", "--limit", "web,!us-web", "--json", "--inventory", inventory,
                                "--playbook", playbook).output)
    assert limited["target"]["hosts"] == ["eu-web"]
    wrong = CliRunner().invoke(main, ["plan", "web", "--limit", "mail", "--inventory", inventory])
    assert wrong.exit_code == 2 and "--limit: 'mail' matches no host of 'web'" in wrong.output
    plain = invoke("--no-color", "plan", "eu-web", "--inventory", inventory, "--playbook", playbook)
    assert "\x1b[" not in plain.output
    for command in (["golden", "verify"], ["journal", "verify"], ["report"], ["status"], ["plan"], ["undo"],
                    ["salvage"]):
        assert "--json" in invoke(*command, "--help").output, command


def test_a_step_for_hosts_outside_the_run_is_shown_not_dropped(tmp_path):
    playbook = tmp_path / "pb.toml"
    playbook.write_text('[[steps]]\nkind = "run"\nname = "us-only"\ntargets = ["us-web"]\nparams = { command = "true" }\n'
                        '[[steps]]\nkind = "run"\nname = "all"\nparams = { command = "true" }\n')
    shown = invoke("plan", "eu-web", "--inventory", str(ROOT / "inventory.toml"), "--playbook", str(playbook))
    assert "us-only" in shown.output and "none of this run (targets: us-web)" in " ".join(shown.output.split())


def test_golden_verify_without_a_manifest_fails_each_host_clearly(tmp_path):
    result = CliRunner().invoke(main, ["golden", "verify", "web", "--inventory", str(ROOT / "inventory.toml"),
                                       "--store", str(tmp_path / "store"), "--json"])
    assert result.exit_code == 1, result.output
    found = json.loads(result.output)
    assert set(found) == {"eu-web", "us-web"}
    assert all(not f["ok"] and "capture one with `recover golden" in f["detail"] for f in found["eu-web"])


def test_a_rehearsal_whose_lab_fails_is_a_clear_error_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    from recovery import rehearsal
    from recovery.lab.fleet_setup import SetupError

    def broken(*args: object, **kwargs: object) -> None:
        raise SetupError("us-web: enabling lab-tuning failed (exit 1): apache2.service is not active")

    monkeypatch.setattr(rehearsal, "rehearse", broken)
    result = CliRunner().invoke(main, ["rehearse", "eu-web", "--scenario", "rsync-2009", "--lab-dir", str(tmp_path)])
    assert result.exit_code == 1 and result.exc_info[0] is SystemExit
    assert "the rehearsal stopped: us-web: enabling lab-tuning failed" in result.output
    assert f"`recover lab --run-dir {tmp_path} down` stops it" in result.output


def test_a_vagrant_rehearsal_always_ends_with_its_fleet_destroyed(tmp_path: Path, monkeypatch) -> None:
    from recovery import rehearsal
    from recovery.lab.vagrant_fleet import VagrantFleet
    from recovery.lab.vagrant_lab import VagrantLabError

    downs: list[Path] = []

    def broken(target: str, scenario: str, lab: VagrantFleet, *args: object, **kwargs: object) -> None:
        assert isinstance(lab, VagrantFleet) and kwargs["rescue"] is False  # libvirt offers no rescue medium
        raise VagrantLabError("vagrant up --no-provision eu-web failed (exit 1):\nno box")

    monkeypatch.setattr(rehearsal, "rehearse", broken)
    monkeypatch.setattr(VagrantFleet, "down", lambda fleet, wipe=False: downs.append(fleet.run_dir))
    args = ["rehearse", "eu-web", "--scenario", "rsync-2009", "--lab", "vagrant", "--lab-dir", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.exc_info[0] is SystemExit
    assert "the rehearsal stopped: vagrant up --no-provision eu-web failed" in result.output
    assert "The Vagrant fleet is destroyed" in result.output and downs == [tmp_path]
    refused = CliRunner().invoke(main, [*args, "--reuse-lab"])
    assert refused.exit_code == 2 and "lives only as long as its rehearsal" in refused.output
