"""Lab fixtures: the cached base image and guests that are stopped by PID even when a test fails."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recovery.hostile import for_terminal
from recovery.lab.bmc import LabBmc
from recovery.lab.fleet import Lab
from recovery.lab.image import ImagePaths
from recovery.lab.keys import generate_ed25519
from recovery.lab.rootpool import build_lab_image
from recovery.lab.vm import BootMode, Guest, LanAddress, LanSwitch
from recovery.oob.lab import LabDriver

BOOT_TIMEOUT = 300.0
#: Lines of each guest's console shown with a failed lab test.
CONSOLE_TAIL = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test keeps its labs' console and QEMU logs and shows their tails: the lab's teardown
    wipes the guests' directories, and a guest that did not come back says why only there."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        for lab in {id(v): v for v in funcargs.values() if isinstance(v, Lab)}.values():
            report.sections.append((f"consoles of the lab in {lab.run_dir}", _keep_consoles(lab)))


def _keep_consoles(lab: Lab) -> str:
    """Copy every guest's logs to ``<lab>-consoles`` beside the lab; their tails, safe to print."""
    kept = lab.run_dir.with_name(lab.run_dir.name + "-consoles")
    kept.mkdir(exist_ok=True)
    shown = [f"kept in {kept}"]
    for name in lab.record().get("guests", {}):
        for log in ("serial.log", "qemu.log"):
            path = lab.run_dir / name / log
            if path.is_file():
                shutil.copyfile(path, kept / f"{name}-{log}")
                tail = b"\n".join(path.read_bytes().splitlines()[-CONSOLE_TAIL:])
                shown.append(f"--- {name} {log}\n{for_terminal(tail, limit=6000)}")
    return "\n".join(shown)


@pytest.fixture(scope="session")
def lab_image() -> ImagePaths:
    """The lab image for the current recipe: base, rescue and root pool disks (built on first use, about ten minutes)."""
    return build_lab_image()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab fleet as `recover lab up` brings it up, shared by the two modules that start from it,
    which run back to back: test_fleet_check puts back every setting it breaks, and
    test_fleet_services ends by stopping the fleet (three TCG guests take minutes to boot)."""
    lab = Lab(tmp_path_factory.mktemp("fleet"))
    try:
        lab.up()
        yield lab
    finally:
        lab.down(wipe=True)


@pytest.fixture(scope="session")
def lab_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def lan(lab_run_dir: Path) -> Iterator[LanSwitch]:
    switch = LanSwitch(lab_run_dir)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


@pytest.fixture(scope="module")
def boot_guest(lab_image: ImagePaths, lab_run_dir: Path) -> Iterator[Callable[..., Guest]]:
    """Factory that boots guests and stops every one of them when the module is done (TCG guests left
    running would starve the next module's guests of CPU)."""
    started: list[Guest] = []

    def boot(name: str, mode: BootMode = BootMode.NORMAL, **options: object) -> Guest:
        guest = Guest(lab_image, lab_run_dir, name, **options)  # type: ignore[arg-type]
        started.append(guest)
        guest.start(mode)
        return guest

    try:
        yield boot
    finally:
        for guest in started:
            guest.stop()
            _drop_disks(guest)


@pytest.fixture(scope="module")
def guest(boot_guest: Callable[..., Guest], lan: LanSwitch) -> Guest:
    """One web host in normal mode, on the lab LAN as 10.77.0.11, reachable over SSH."""
    web = boot_guest("lab-web", lan=lan, lan_address=LanAddress.for_host_number(11))
    print(f"lab-web: normal boot to SSH in {web.wait_for_ssh(BOOT_TIMEOUT):.1f} s")
    return web


@pytest.fixture(scope="session")
def bmc_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The orchestrator's BMC key; the lab BMC restricts it to its commands."""
    path = tmp_path_factory.mktemp("bmc-key") / "id_ed25519"
    generate_ed25519(path, "recovery-operator")
    return path


@pytest.fixture(scope="session")
def lab_bmc(lab_run_dir: Path, bmc_key: Path) -> Iterator[LabBmc]:
    """The lab BMC (sshd on 127.0.0.1), stopped by its PID at the end of the session."""
    with LabBmc(lab_run_dir / "bmc", bmc_key.with_name(bmc_key.name + ".pub").read_text()) as bmc:
        yield bmc


@pytest.fixture(scope="module")
def bmc_guest(lab_image: ImagePaths, lab_run_dir: Path, lab_bmc: LabBmc) -> Iterator[Callable[[str], Guest]]:
    """Factory of hosts under the lab BMC, powered off; whoever started them, their QEMUs stop at the end."""
    names: list[str] = []

    def make(name: str) -> Guest:
        machine = Guest(lab_image, lab_run_dir, name)
        lab_bmc.add(machine)
        names.append(name)
        return machine

    try:
        yield make
    finally:
        for name in names:
            machine = Guest(lab_image, lab_run_dir, name)
            machine.stop()
            _drop_disks(machine)


@pytest.fixture(scope="module")
def bmc_machine(bmc_guest: Callable[[str], Guest]) -> Guest:
    """A web host under the lab BMC, powered off."""
    return bmc_guest("bmc-web")


@pytest.fixture(scope="module")
def bmc_driver(lab_bmc: LabBmc, bmc_machine: Guest, bmc_key: Path) -> Iterator[LabDriver]:
    driver = LabDriver(lab_bmc.endpoint("eu-web", bmc_machine.name, bmc_key))
    try:
        yield driver
    finally:
        driver.close()


def _drop_disks(guest: Guest) -> None:
    """A stopped guest's disks are gigabytes the rest of the session may need; its logs stay to be read."""
    for disk in (guest.root_disk, guest.data_disk):
        disk.unlink(missing_ok=True)
