"""Commands over a real serial console: a lab host booted single-user through the lab BMC, as in 2009.

One boot for the module: ``boot once single-user`` and ``power on`` through
the BMC over SSH, then one console session (sulogin, framed commands) that
every test shares, the ZFS agent included.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest

from recovery.lab.image import ImagePaths
from recovery.lab.vm import Guest
from recovery.oob.base import BootMode, PowerState
from recovery.oob.lab import LabDriver
from recovery.secrets import resolve
from recovery.transport.console import ConsoleSession
from recovery.transport.result import TransportError
from recovery.zfs.client import AgentClient

pytestmark = pytest.mark.lab

LOGIN_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def console(bmc_driver: LabDriver, bmc_machine: Guest, lab_image: ImagePaths) -> Iterator[ConsoleSession]:
    """A root shell on the console of a host that the BMC booted single-user."""
    if bmc_driver.power_state() is PowerState.ON:
        bmc_driver.power_off(graceful=False)
        bmc_driver.wait_power(PowerState.OFF, 30)
    bmc_driver.boot_once(BootMode.SINGLE_USER)
    started = time.monotonic()
    bmc_driver.power_on()
    password = resolve(f"file:{lab_image.root_password_file}", "lab root password")
    session = ConsoleSession(bmc_driver.console(), password, name=bmc_machine.name, login_timeout=LOGIN_TIMEOUT)
    try:
        session.open()
        print(f"single-user boot to a console shell: {time.monotonic() - started:.1f} s")
        yield session
    finally:
        session.close()


def test_host_is_in_single_user_mode(console: ConsoleSession) -> None:
    result = console.run("hostname; systemctl is-active rescue.target; systemctl is-active ssh || true")
    assert result.ok, result.stderr
    assert result.stdout.split() == [b"bmc-web", b"active", b"inactive"]


def test_exit_codes_and_separate_stderr(console: ConsoleSession) -> None:
    result = console.run("echo out; echo err >&2; exit 7")
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 7)
    assert console.run("true").ok


def test_one_megabyte_of_binary_output(console: ConsoleSession) -> None:
    started = time.monotonic()
    result = console.run("head -c 1000000 /dev/urandom | tee /run/blob", timeout=300)
    seconds = time.monotonic() - started
    assert result.ok and not result.truncated
    assert len(result.stdout) == 1_000_000
    on_host = console.run("sha256sum </run/blob; rm /run/blob").stdout.split()[0].decode()
    assert hashlib.sha256(result.stdout).hexdigest() == on_host
    print(f"1 MB of binary output over the console: {seconds:.1f} s")


def test_output_over_the_cap_is_truncated(console: ConsoleSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "output_cap", 1000)
    result = console.run("head -c 5000 /dev/zero; echo tail >&2")
    assert result.truncated
    assert result.stdout == b"\0" * 1000
    assert result.stderr == b"tail\n"


def test_escape_sequences_come_back_as_bytes(console: ConsoleSession) -> None:
    hostile = b"\x1b[2J\x1b]0;owned\x07\x1b[?2004h\x9b6n"
    result = console.run(r"printf '\033[2J\033]0;owned\007\033[?2004h\2336n'")
    assert result.stdout == hostile
    straight = console.run(r"printf '\033[2J\033]0;owned\007\033c' >/dev/console; echo still-framed")
    assert straight.stdout == b"still-framed\n"


def test_kernel_messages_interleaving_the_output(console: ConsoleSession, bmc_machine: Guest) -> None:
    noisy = (
        "(for i in $(seq 40); do echo recovery-noise-$i >/dev/kmsg; sleep 0.05; done) & "
        "head -c 300000 /dev/urandom | tee /run/noisy; wait"
    )
    result = console.run(noisy + "; echo hello >/dev/kmsg", timeout=300)
    assert result.ok and len(result.stdout) == 300_000
    on_host = console.run("sha256sum </run/noisy; rm /run/noisy").stdout.split()[0].decode()
    assert hashlib.sha256(result.stdout).hexdigest() == on_host
    assert b"recovery-noise-40" in bmc_machine.serial_log.read_bytes()


def test_long_commands_pass_the_tty_line_limit(console: ConsoleSession) -> None:
    for size in (5000, 100_000):
        result = console.run(f"echo {'x' * size} | wc -c")
        assert result.stdout.strip() == str(size + 1).encode()


def test_a_command_over_its_timeout_is_interrupted(console: ConsoleSession) -> None:
    with pytest.raises(TransportError, match="did not finish within its timeout"):
        console.run("sleep 120", timeout=3)
    assert console.run("echo next").stdout == b"next\n"


def test_zfs_agent_over_the_console(console: ConsoleSession) -> None:
    pool = console.run("modprobe zfs && (zpool list tank >/dev/null 2>&1 || zpool create -f tank /dev/disk/by-id/virtio-TANK0)", 300)
    assert pool.ok, pool.stderr
    agent = AgentClient(console)
    agent.ping()  # a framed, nonce-checked reply or an exception
    assert "tank" in [dataset.name for dataset in agent.list_datasets()]
