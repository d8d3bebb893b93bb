"""The libvirt driver against a real libvirtd: power, a one-time single-user boot, the serial console.

The lab's own libvirtd (network namespace, private state) runs one small
domain: the lab kernel and initramfs with ``rdinit=/usr/bin/sh``, so a shell
answers on the serial console seconds after each start, and ``/proc/cmdline``
there shows what the boot was told.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from recovery.lab.image import ImagePaths
from recovery.lab.libvirt_host import LibvirtHost
from recovery.oob.base import BootMode, OobError, OobNotSupported, PowerState
from recovery.oob.libvirt import SINGLE_USER_ARGS, LibvirtDriver, LibvirtEndpoint, VirshConsole

pytestmark = [pytest.mark.lab, pytest.mark.vagrant]

DOMAIN = "oob-probe"
NORMAL_LINE = "console=ttyS0 rdinit=/usr/bin/sh"
SHELL_TIMEOUT = 120.0


def domain_xml(image: ImagePaths) -> str:
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{image.kernel}</kernel><initrd>{image.initrd}</initrd>
    <cmdline>{NORMAL_LINE}</cmdline></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>"""


@pytest.fixture(scope="module")
def libvirt(lab_image: ImagePaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtHost]:
    """The lab's own libvirtd with one defined, stopped domain; the daemons are stopped by PID at the end."""
    LibvirtHost.stop_abandoned()
    host = LibvirtHost()
    try:
        host.start()
        definition = tmp_path_factory.mktemp("libvirt") / "domain.xml"
        definition.write_text(domain_xml(lab_image))
        host.virsh("define", str(definition))
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def driver(libvirt: LibvirtHost) -> LibvirtDriver:
    return LibvirtDriver(LibvirtEndpoint(host="probe", address=libvirt.uri, domain=DOMAIN))


def command_line_seen(driver: LibvirtDriver) -> str:
    """What the running kernel was booted with, asked on the serial console through ``virsh console``."""
    with driver.console() as console:
        wait_for(console, rb"/ # ", b"\n")  # busybox's prompt
        # a shell that is init has no /proc yet; the echo of the typed line does not match the pattern
        console.write(b'mkdir -p /proc; mount -t proc proc /proc; echo CMD""LINE:$(cat /proc/cmdline):END\n')
        return wait_for(console, rb"CMDLINE:([^:\r\n]+):END").group(1).decode()


def wait_for(console: VirshConsole, pattern: bytes, nudge: bytes = b"") -> re.Match[bytes]:
    """Read until ``pattern`` shows up, sending ``nudge`` every few seconds (a prompt is printed once)."""
    deadline, seen = time.monotonic() + SHELL_TIMEOUT, b""
    while time.monotonic() < deadline:
        if nudge:
            console.write(nudge)
        seen += console.read(3.0)
        if found := re.search(pattern, seen):
            return found
    raise AssertionError(f"{pattern!r} not on the console within {SHELL_TIMEOUT} s: {seen[-800:]!r}")


def next_command_line(driver: LibvirtDriver, libvirt: LibvirtHost) -> str:
    """The kernel command line the domain's next start will use (its inactive definition)."""
    definition = ET.fromstring(libvirt.virsh("dumpxml", "--inactive", driver.endpoint.domain))
    return definition.findtext("os/cmdline") or ""


def test_single_user_once_then_normal_again(driver: LibvirtDriver, libvirt: LibvirtHost) -> None:
    assert driver.power_state() is PowerState.OFF
    driver.boot_once(BootMode.SINGLE_USER)
    assert next_command_line(driver, libvirt) == f"{NORMAL_LINE} {SINGLE_USER_ARGS}"
    driver.power_on()
    driver.wait_power(PowerState.ON, timeout=30)
    assert next_command_line(driver, libvirt) == NORMAL_LINE  # put back as soon as the machine started
    assert command_line_seen(driver) == f"{NORMAL_LINE} {SINGLE_USER_ARGS}"
    driver.power_cycle()  # no request in between: the boot after the one-time one is normal again
    assert command_line_seen(driver) == NORMAL_LINE
    driver.power_off(graceful=False)
    driver.wait_power(PowerState.OFF, timeout=30)


def test_a_one_time_boot_can_be_taken_back(driver: LibvirtDriver, libvirt: LibvirtHost) -> None:
    driver.boot_once(BootMode.SINGLE_USER)
    driver.boot_once(BootMode.SINGLE_USER)  # asked twice: the normal line is kept once
    driver.boot_once(BootMode.NORMAL)
    assert next_command_line(driver, libvirt) == NORMAL_LINE
    assert "boot-once" not in libvirt.virsh("dumpxml", "--inactive", DOMAIN)


def test_rescue_is_refused_and_an_unknown_domain_named(driver: LibvirtDriver) -> None:
    with pytest.raises(OobNotSupported):
        driver.boot_once(BootMode.RESCUE)
    stranger = LibvirtDriver(LibvirtEndpoint(host="ghost", address=driver.endpoint.address, domain="ghost"))
    with pytest.raises(OobError, match="ghost: read power state over libvirt"):
        stranger.power_state()


def test_the_console_refuses_virsh_escape_character(driver: LibvirtDriver) -> None:
    with VirshConsole(driver.endpoint) as console, pytest.raises(OobError, match="escape character"):
        console.write(b"\x1d")
