"""The lab IPMI BMC's wire decisions: cipher suite refusal and boot flags, on the bytes pyghmi sends."""

from __future__ import annotations

import struct

import pytest

from recovery.lab.echo_guest import BANNER, CODE, LOAD_ADDRESS, boot_sector
from recovery.lab.ipmi_bmc import BootOverride, boot_flags_reply, open_session_status, parse_boot_flags
from recovery.lab.power import power_of
from recovery.oob.base import PowerState

# The algorithm payloads of pyghmi's RMCP+ open session request (session.py, _open_rmcpplus_request).
SHA256_PROPOSAL = bytes([0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0])
SHA1_PROPOSAL = bytes([0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0])
SHA1_AUTH_SHA256_INTEGRITY = bytes([0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0])


def _open_request(proposal: bytes) -> bytes:
    return bytes([1, 0, 0, 0]) + struct.pack("<I", 2017673556) + proposal


def test_sha256_proposal_is_refused_so_the_client_falls_back() -> None:
    assert open_session_status(_open_request(SHA256_PROPOSAL)) == 0x04


def test_sha1_proposal_is_accepted() -> None:
    assert open_session_status(_open_request(SHA1_PROPOSAL)) == 0


def test_sha256_integrity_alone_is_refused() -> None:
    assert open_session_status(_open_request(SHA1_AUTH_SHA256_INTEGRITY)) == 0x05


def test_truncated_open_request_is_refused() -> None:
    assert open_session_status(_open_request(SHA1_PROPOSAL)[:20]) == 0x04


# Set System Boot Options, parameter 5, as pyghmi's set_bootdev builds it: (5, flags, device << 2, 0, 0, 0).
@pytest.mark.parametrize(
    ("data", "override"),
    [
        ((5, 0x80, 0x04, 0, 0, 0), BootOverride("network", persistent=False)),
        ((5, 0xC0, 0x08, 0, 0, 0), BootOverride("hd", persistent=True)),
        ((5, 0x80, 0x14, 0, 0, 0), BootOverride("optical", persistent=False)),
        ((5, 0x00, 0x00, 0, 0, 0), None),
        ((5, 0x80, 0x00, 0, 0, 0), None),
    ],
)
def test_boot_flags_are_parsed(data: tuple[int, ...], override: BootOverride | None) -> None:
    assert parse_boot_flags(data) == override


def test_unknown_boot_device_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown boot device selector 0x1c"):
        parse_boot_flags((5, 0x80, 0x1C, 0, 0, 0))


@pytest.mark.parametrize(
    ("override", "reply"),
    [
        (None, [1, 5, 0, 0, 0, 0, 0]),
        (BootOverride("network", persistent=False), [1, 5, 0x80, 0x04, 0, 0, 0]),
        (BootOverride("optical", persistent=True), [1, 5, 0xC0, 0x14, 0, 0, 0]),
    ],
)
def test_boot_flags_reply(override: BootOverride | None, reply: list[int]) -> None:
    assert boot_flags_reply(override) == reply


@pytest.mark.parametrize(
    ("status", "state"),
    [("running", PowerState.ON), ("paused", PowerState.ON), ("shutdown", PowerState.OFF)],
)
def test_qmp_status_to_power(status: str, state: PowerState) -> None:
    assert power_of(status) is state


def test_echo_boot_sector_is_bootable_and_finds_its_banner() -> None:
    sector = boot_sector()
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    banner_address = int.from_bytes(CODE[5:7], "little")  # the operand of mov si, banner
    start = banner_address - LOAD_ADDRESS
    assert sector[start : start + len(BANNER) + 1] == BANNER + b"\0"
