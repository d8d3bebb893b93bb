from __future__ import annotations

from pathlib import Path

import pytest

import recovery.steps  # noqa: F401
from recovery.config.errors import ConfigError
from recovery.config.inventory import Inventory
from recovery.config.playbook import Playbook
from recovery.config.targets import UnknownTarget, limit, resolve
from recovery.engine.plan import RUN_SCOPE, build


def inventory(*names: str) -> Inventory:
    host = {"address": "127.0.0.1", "ssh": {"key": "/k", "host_key": "ssh-ed25519 AAAA"}}
    return Inventory.model_validate({
        "hosts": {n: host for n in names},
        "groups": {"web": list(names[:-1]), "all": ["web", names[-1]]},
        "services": {"www": {"hosts": ["web"]}},
    })


def playbook(serial: int = 1, priority: list[list[str]] | None = None, extra: list[dict] | None = None) -> Playbook:
    steps = [
        {"kind": "message", "params": {"text": "start"}},
        {"kind": "run", "name": "a", "params": {"command": "true"}},
        {"kind": "run", "name": "b", "params": {"command": "true"}},
        *(extra or []),
    ]
    return Playbook.model_validate({"order": {"serial": serial, "priority": priority or []}, "steps": steps})


def test_serial_one_takes_hosts_one_by_one_through_the_whole_block():
    inv = inventory("h1", "h2", "h3")
    plan = build(inv, playbook(), resolve(inv, "all"), Path("pb"))
    assert [b.batches for b in plan.blocks] == [((RUN_SCOPE,),), (("h1",), ("h2",), ("h3",))]
    assert [s.id for s in plan.blocks[1].steps] == ["a", "b"]


def test_batches_and_priority_groups():
    inv = inventory("h1", "h2", "h3", "h4")
    plan = build(inv, playbook(serial=2, priority=[["h3"]]), resolve(inv, "all"), Path("pb"))
    assert plan.blocks[1].batches == (("h3",), ("h1", "h2"), ("h4",))


def test_step_serial_override_makes_its_own_block():
    inv = inventory("h1", "h2")
    extra = [{"kind": "run", "name": "together", "serial": 10, "params": {"command": "true"}}]
    plan = build(inv, playbook(extra=extra), resolve(inv, "all"), Path("pb"))
    assert plan.blocks[-1].batches == (("h1", "h2"),)


def test_target_may_be_host_group_or_service():
    inv = inventory("h1", "h2", "h3")
    assert resolve(inv, "h2").hosts == ("h2",) and resolve(inv, "h2").services == ("www",)
    assert resolve(inv, "web").hosts == ("h1", "h2") and resolve(inv, "web").kind == "group"
    assert resolve(inv, "www").hosts == ("h1", "h2") and resolve(inv, "www").kind == "service"
    assert resolve(inv, "h3").services == ()


def test_step_targets_narrow_the_hosts():
    inv = inventory("h1", "h2", "h3")
    extra = [{"kind": "run", "name": "only-h3", "targets": ["h3"], "params": {"command": "true"}}]
    plan = build(inv, playbook(extra=extra), resolve(inv, "all"), Path("pb"))
    assert next(s for s in plan.steps if s.id == "only-h3").hosts == ("h3",)


def test_destructive_is_seen():
    inv = inventory("h1", "h2")
    extra = [{"kind": "run", "confirm": True, "params": {"command": "true"}}]
    plan = build(inv, playbook(extra=extra), resolve(inv, "web"), Path("pb"))
    assert plan.destructive


def test_a_step_needing_another_kinds_result_must_come_after_it():
    inv = inventory("h1", "h2")
    steps = [{"kind": "return", "params": {}}, {"kind": "divert", "params": {}}]
    with pytest.raises(ConfigError) as err:
        build(inv, Playbook.model_validate({"steps": steps}), resolve(inv, "web"), Path("pb.toml"))
    assert err.value.messages == ["pb.toml: steps[0].kind: `return` needs the result of a `divert` step before it"]


def test_a_needed_step_must_cover_the_same_hosts():
    inv = inventory("h1", "h2", "h3")
    steps = [{"kind": "find_clean", "targets": ["h1"], "params": {}}, {"kind": "restore", "params": {}}]
    with pytest.raises(ConfigError) as err:
        build(inv, Playbook.model_validate({"steps": steps}), resolve(inv, "web"), Path("pb.toml"))
    assert any("steps[1].kind: `restore` needs the result of a `find_clean` step before it on h2" in m
               for m in err.value.messages)


def test_limit_narrows_the_hosts_with_patterns_and_exclusions():
    inv = inventory("eu-web", "us-web", "people")
    target = resolve(inv, "all")
    assert limit(inv, target, "web,!us-web").hosts == ("eu-web",)
    assert limit(inv, target, "*-web").hosts == ("eu-web", "us-web")
    assert limit(inv, target, "!people").services == target.services
    with pytest.raises(UnknownTarget, match="--limit: 'mail' matches no host of 'all'"):
        limit(inv, target, "mail")
    with pytest.raises(UnknownTarget, match="leaves no host"):
        limit(inv, target, "web,!*-web")


def test_boot_single_boots_the_rescue_image_where_the_bmc_offers_one() -> None:
    from recovery.config.inventory import Inventory
    from recovery.steps.boot import boot_mode

    ssh = {"key": "/k", "host_key": "ssh-ed25519 AAAA"}
    lab = {"driver": "lab", "machine": "m", "ssh": {**ssh}}
    ipmi = {"driver": "ipmi", "address": "127.0.0.1", "username": "u", "password": "env:P"}
    inventory = Inventory.model_validate({"hosts": {
        "a": {"address": "127.0.0.1", "ssh": ssh, "oob": {**lab, "rescue": True}},
        "b": {"address": "127.0.0.1", "ssh": ssh, "oob": lab},
        "c": {"address": "127.0.0.1", "ssh": ssh, "oob": {**ipmi, "rescue": "cdrom"}},
        "d": {"address": "127.0.0.1", "ssh": ssh, "oob": ipmi},
    }})
    assert [boot_mode(inventory, h, "auto") for h in "abcd"] == ["rescue", "single-user", "rescue", "single-user"]
    assert boot_mode(inventory, "a", "single-user") == "single-user"  # asked for by name
