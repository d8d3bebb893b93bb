"""The libvirt driver's one-time boot: two definitions, the normal command line kept in the domain's metadata.

The driver itself runs against a real libvirtd in tests/lab/test_oob_libvirt.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from recovery.config.inventory import LibvirtOob
from recovery.oob.base import BootMode, OobNotSupported, OobRefused, OobUnreachable
from recovery.oob.libvirt import (
    METADATA_NS,
    SINGLE_USER_ARGS,
    LibvirtDriver,
    LibvirtEndpoint,
    _kind_of,
    once_single_user,
    restore_normal,
)

DIRECT_KERNEL = """<domain type='qemu'><name>eu-web</name>
<os><type>hvm</type><kernel>/boot/vmlinuz</kernel><cmdline>root=ZFS=rpool/ROOT/debian console=ttyS0</cmdline></os>
</domain>"""


def test_single_user_once_keeps_the_normal_line_and_gets_it_back() -> None:
    definition = ET.fromstring(DIRECT_KERNEL)
    assert once_single_user(definition, "eu-web") is True
    assert definition.findtext("os/cmdline") == f"root=ZFS=rpool/ROOT/debian console=ttyS0 {SINGLE_USER_ARGS}"
    kept = definition.find(f"metadata/{{{METADATA_NS}}}boot-once")
    assert kept is not None and kept.get("normal") == "root=ZFS=rpool/ROOT/debian console=ttyS0"
    # what libvirt is given and gives back: the metadata survives the round trip through text
    definition = ET.fromstring(ET.tostring(definition))
    assert once_single_user(definition, "eu-web") is False  # asked twice: the first normal line stays
    assert definition.findtext("os/cmdline").count(SINGLE_USER_ARGS) == 1
    assert restore_normal(definition) is True
    assert definition.findtext("os/cmdline") == "root=ZFS=rpool/ROOT/debian console=ttyS0"
    assert definition.find(f"metadata/{{{METADATA_NS}}}boot-once") is None
    assert restore_normal(definition) is False  # nothing pending: nothing to define


def test_a_domain_booted_by_its_boot_loader_cannot_be_made_single_user() -> None:
    definition = ET.fromstring("<domain><name>x</name><os><type>hvm</type><boot dev='hd'/></os></domain>")
    with pytest.raises(OobNotSupported, match="boot loader"):
        once_single_user(definition, "one-time boot single-user of x")


def test_rescue_is_not_offered() -> None:
    driver = LibvirtDriver(LibvirtEndpoint(host="eu-web", address="qemu:///nowhere", domain="eu-web"))
    with pytest.raises(OobNotSupported, match="single-user mode is what it offers"):
        driver.boot_once(BootMode.RESCUE)


@pytest.mark.parametrize("message, kind", [
    ("error: failed to connect to the hypervisor", OobUnreachable),
    ("error: Failed to connect socket to '/x/libvirt-sock': No such file or directory", OobUnreachable),
    ("error: authentication failed: access denied", OobRefused),
])  # fmt: skip
def test_virsh_errors_say_what_kind_of_failure(message: str, kind: type) -> None:
    assert _kind_of(message) is kind


def test_inventory_block() -> None:
    oob = LibvirtOob(driver="libvirt", uri="qemu:///system?socket=/run/lab/libvirt-sock", domain="vagrant_eu-web")
    assert oob.domain == "vagrant_eu-web"
    with pytest.raises(ValueError):
        LibvirtOob(driver="libvirt", uri="qemu:///system", domain="")
