"""The HAProxy driver against a real HAProxy on 127.0.0.1, checked by HTTP through its frontend."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recovery.lab.haproxy import LabHaproxy
from recovery.lab.mirror import Mirror
from recovery.traffic.base import TrafficConflict, TrafficError, TrafficUnreachable
from recovery.traffic.haproxy import HaproxyBackend, HaproxyDriver, HaproxySocket, runtime_command

pytestmark = pytest.mark.integration

NOTICE = "This site is being restored after a security incident."
SERVICE = HaproxyBackend(backend="web", servers=("eu-web", "us-web"), mirror=("mirror",))


def _fetch(url: str) -> tuple[int, str]:
    """One request on a fresh connection, so every request is balanced anew."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _bodies(balancer: LabHaproxy, count: int = 6) -> set[str]:
    return {_fetch(balancer.url)[1] for _ in range(count)}


def test_divert_to_the_mirror_notice_then_restore(lab_haproxy: LabHaproxy, web_sites: dict[str, Mirror]) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    before = driver.state(SERVICE)
    assert dict(before.routes) == {"eu-web": "ready", "us-web": "ready", "mirror": "maint"}
    assert _bodies(lab_haproxy) == {"served by eu-web\n", "served by us-web\n"}

    web_sites["mirror"].show_notice(NOTICE)
    after = driver.divert(SERVICE, before)

    assert dict(after.routes) == {"eu-web": "drain", "us-web": "drain", "mirror": "ready"}
    status, body = _fetch(lab_haproxy.url)
    assert status == 503 and NOTICE in body
    assert all(NOTICE in body for body in _bodies(lab_haproxy))
    restored = driver.restore(SERVICE, after, before)
    assert restored.same_routes(before)
    assert _bodies(lab_haproxy) == {"served by eu-web\n", "served by us-web\n"}


def test_state_is_read_back_from_show_servers_state(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    driver.divert(SERVICE, driver.state(SERVICE))
    answer = runtime_command(lab_haproxy.socket, "show servers state web")
    eu_line = next(line for line in answer.splitlines() if " eu-web " in line)
    assert eu_line.split()[6] == "8"  # srv_admin_state: SRV_ADMF_FDRAIN


def test_failed_host_stays_out_on_return(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    before = driver.state(SERVICE)
    after = driver.divert(SERVICE, before)

    restored = driver.restore(SERVICE, after, before.without(["us-web"]))

    assert dict(restored.routes) == {"eu-web": "ready", "us-web": "drain", "mirror": "maint"}
    assert _bodies(lab_haproxy) == {"served by eu-web\n"}


def test_divert_again_is_a_no_op(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    before = driver.state(SERVICE)
    after = driver.divert(SERVICE, before)
    assert driver.divert(SERVICE, before) == after


def test_server_changed_by_hand_after_the_plan_is_not_touched(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    planned = driver.state(SERVICE)
    runtime_command(lab_haproxy.socket, "set server web/us-web state maint")

    with pytest.raises(TrafficConflict, match="backend web.*us-web maint"):
        driver.divert(SERVICE, planned)

    assert dict(driver.state(SERVICE).routes) == {"eu-web": "ready", "us-web": "maint", "mirror": "maint"}


def test_change_leaving_no_server_ready_is_refused(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    before = driver.state(SERVICE)
    after = driver.divert(SERVICE, before)
    with pytest.raises(TrafficError, match="no server ready"):
        driver.restore(SERVICE, after, before.without(["eu-web", "us-web"]))
    assert driver.state(SERVICE) == after


def test_unknown_server_is_named(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    with pytest.raises(TrafficError, match="no server asia-web in the backend"):
        driver.state(HaproxyBackend("web", ("eu-web", "asia-web")))


def test_unknown_backend_is_named(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    with pytest.raises(TrafficError, match="backend shop: Can't find backend"):
        driver.state(HaproxyBackend("shop", ("eu-web",)))


def test_name_that_would_smuggle_a_command_is_refused(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    with pytest.raises(TrafficError, match="invalid backend name"):
        driver.state(HaproxyBackend("web;shutdown", ("eu-web",)))


def test_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    driver = HaproxyDriver(HaproxySocket(str(tmp_path / "admin.sock"), timeout=0.5))
    with pytest.raises(TrafficUnreachable, match="admin.sock.*No such file"):
        driver.state(SERVICE)


def test_divert_cut_short_by_a_crash_resumes(lab_haproxy: LabHaproxy) -> None:
    driver = HaproxyDriver(lab_haproxy.socket)
    planned = driver.state(SERVICE)
    runtime_command(lab_haproxy.socket, "set server web/mirror state ready")
    runtime_command(lab_haproxy.socket, "set server web/eu-web state drain")

    after = driver.divert(SERVICE, planned)

    assert dict(after.routes) == {"eu-web": "drain", "us-web": "drain", "mirror": "ready"}
