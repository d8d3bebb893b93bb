"""The command driver with small local commands that keep the routing in a file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from recovery.traffic.base import TrafficConflict, TrafficError, TrafficRefused, TrafficState, TrafficUnverified
from recovery.traffic.command import CommandDriver, CommandTraffic


def _service(routing_file: Path, **changes: object) -> CommandTraffic:
    def write(word: str) -> tuple[str, ...]:
        return (sys.executable, "-c", f"import pathlib; pathlib.Path({str(routing_file)!r}).write_text({word!r})")

    check = f"pathlib.Path({str(routing_file)!r}).read_text() != os.environ['RECOVERY_TRAFFIC']"
    verify = (sys.executable, "-c", f"import os, pathlib, sys; sys.exit({check})")
    fields: dict[str, object] = {
        "name": "cdn",
        "divert": write("diverted"),
        "restore": write("normal"),
        "verify": verify,
        "verify_timeout": 0.5,
    }
    return CommandTraffic(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture
def routing(tmp_path: Path) -> Path:
    path = tmp_path / "routing"
    path.write_text("normal")
    return path


def test_divert_and_restore(routing: Path) -> None:
    driver, service = CommandDriver(), _service(routing)
    before = driver.state(service)
    assert before.routes == (("cdn", "normal"),)

    after = driver.divert(service, before)

    assert after.routes == (("cdn", "diverted"),) and routing.read_text() == "diverted"
    assert driver.restore(service, after, before) == before and routing.read_text() == "normal"


def test_divert_when_already_diverted_runs_nothing(routing: Path) -> None:
    driver = CommandDriver()
    before = driver.state(_service(routing))
    driver.divert(_service(routing), before)
    failing = _service(routing, divert=(sys.executable, "-c", "raise SystemExit(3)"))
    assert driver.divert(failing, before).routes == (("cdn", "diverted"),)


def test_routing_changed_since_the_plan(routing: Path) -> None:
    driver, service = CommandDriver(), _service(routing)
    planned = driver.state(service)
    routing.write_text("diverted")
    with pytest.raises(TrafficConflict, match="cdn diverted"):
        driver.restore(service, planned, planned)


def test_failing_divert_command_is_reported_with_its_stderr(routing: Path) -> None:
    driver = CommandDriver()
    service = _service(routing, divert=(sys.executable, "-c", "import sys; sys.exit('api said \\x1b[2Jno')"))
    with pytest.raises(TrafficRefused, match="exited with 1: api said no") as refused:
        driver.divert(service, driver.state(service))
    assert "\x1b" not in str(refused.value) and routing.read_text() == "normal"


def test_divert_not_confirmed_by_verification(routing: Path) -> None:
    driver = CommandDriver()
    service = _service(routing, divert=(sys.executable, "-c", "pass"))
    with pytest.raises(TrafficUnverified, match="did not confirm diverted"):
        driver.divert(service, driver.state(service))


def test_missing_program_and_hang_are_errors(routing: Path) -> None:
    driver = CommandDriver()
    with pytest.raises(TrafficError, match="cannot run /nonexistent/tool"):
        driver.state(_service(routing, verify=("/nonexistent/tool",)))
    with pytest.raises(TrafficError, match="did not finish within"):
        driver.state(_service(routing, verify=(sys.executable, "-c", "import time; time.sleep(5)"), timeout=0.2))


def test_unknown_state_is_an_error(tmp_path: Path) -> None:
    routing = tmp_path / "routing"
    routing.write_text("half-way")
    with pytest.raises(TrafficError, match="neither diverted nor normal"):
        CommandDriver().state(_service(routing))


def test_state_journal_form_and_without() -> None:
    state = TrafficState.of("DNS www", [("192.0.2.11", "A"), ("192.0.2.10", "A")], ttl=300, serial=7)
    assert state.destinations == ("192.0.2.10", "192.0.2.11")
    assert TrafficState.from_dict(state.as_dict()) == state
    assert state.without(["192.0.2.10"]).routes == (("192.0.2.11", "A"),)
