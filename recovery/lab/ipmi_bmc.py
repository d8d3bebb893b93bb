"""The lab's IPMI BMC: a pyghmi BMC server on 127.0.0.1 that powers a QEMU VM through QMP.

It runs as its own process (``python -m recovery.lab.ipmi_bmc``): pyghmi
keeps client and server sessions in shared class state, so a BMC in the
process that also runs the IPMI driver would answer its own requests.

pyghmi's server implements only cipher suite 3 (HMAC-SHA1) but accepts a
client's SHA-256 proposal and then answers in SHA-1, which the client reads as
a wrong password. This BMC refuses any other proposal in the RMCP+ open
session response, as a real BMC does, and the client falls back to SHA-1.

Serial-over-LAN connects a client to the VM's first serial port (a unix
socket QEMU serves); output the guest writes while no client is attached is
lost, as on a real BMC.

Boot device overrides are kept with their persistence: a one-time override
is used by the next power on or reset and then cleared, and every boot's
device is recorded in ``boots.json`` so tests can see what the firmware
would have started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

import pyghmi.ipmi.bmc as bmc
import pyghmi.ipmi.private.constants as constants
import pyghmi.ipmi.private.serversession as serversession
from pyghmi.ipmi.command import boot_devices
from pyghmi.ipmi.private.session import Session

from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port
from recovery.lab.power import QemuMachine

CONFIG_FILE = "bmc.json"
READY_FILE = "ready"
BOOTS_FILE = "boots.json"
#: How often the guest's serial output is forwarded to a Serial-over-LAN client, in seconds.
CONSOLE_POLL = 0.02

# IPMI 2.0 table 13-17/18/19: the one cipher suite pyghmi's server speaks.
_AUTH_HMAC_SHA1 = 1
_INTEGRITY_HMAC_SHA1_96 = 1
# IPMI 2.0 table 13-15: RMCP+ status codes.
_STATUS_BAD_AUTH_ALGORITHM = 0x04
_STATUS_BAD_INTEGRITY_ALGORITHM = 0x05
_STATUS_UNAUTHORIZED_NAME = 0x0D
_BOOT_FLAGS_PARAMETER = 5
_FLAG_VALID = 0x80
_FLAG_PERSISTENT = 0x40


@dataclass(frozen=True)
class BootOverride:
    """A boot device override as IPMI's boot flags parameter holds it."""

    device: str
    persistent: bool


def parse_boot_flags(data: Sequence[int]) -> BootOverride | None:
    """Read a Set System Boot Options request for parameter 5; None clears the override."""
    flags, selector = data[1], data[2]
    if not flags & _FLAG_VALID:
        return None
    device = boot_devices.get((selector >> 2) & 0b1111)
    if not isinstance(device, str):
        raise ValueError(f"unknown boot device selector {selector:#04x}")
    if device == "default":
        return None
    return BootOverride(device, persistent=bool(flags & _FLAG_PERSISTENT))


def boot_flags_reply(override: BootOverride | None) -> list[int]:
    """The Get System Boot Options reply for parameter 5."""
    if override is None:
        return [1, _BOOT_FLAGS_PARAMETER, 0, 0, 0, 0, 0]
    flags = _FLAG_VALID | (_FLAG_PERSISTENT if override.persistent else 0)
    return [1, _BOOT_FLAGS_PARAMETER, flags, boot_devices[override.device], 0, 0, 0]


def open_session_status(request: bytes | bytearray) -> int:
    """0 if an RMCP+ open session request proposes HMAC-SHA1, else the refusal status code."""
    if len(request) < 32 or request[12] & 0x3F != _AUTH_HMAC_SHA1:
        return _STATUS_BAD_AUTH_ALGORITHM
    if request[20] & 0x3F != _INTEGRITY_HMAC_SHA1_96:
        return _STATUS_BAD_INTEGRITY_ALGORITHM
    return 0


class Sha1OnlySession(serversession.ServerSession):
    """A server session that refuses what it cannot speak, and unknown users, as a real BMC does.

    pyghmi's own session answers SHA-1 to a SHA-256 proposal and stays silent
    on an unknown user name, which a client sees as a wrong password or a
    dead BMC.
    """

    def create_open_session_response(self, request: bytearray) -> bytearray:
        status = open_session_status(request)
        if status == 0:
            return super().create_open_session_response(request)
        self.clientsessionid = request[4:8]
        return bytearray([request[0], status, 0, 0]) + self.clientsessionid

    def _got_rakp1(self, data: bytearray) -> None:
        name = bytes(data[28:]).decode("utf-8", errors="replace")
        if self.authdata.get(name) is not None:
            return super()._got_rakp1(data)
        refusal = bytearray([data[0], _STATUS_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
        self.send_payload(refusal, constants.payload_types["rakp2"], retry=False)


class QemuBmc(bmc.Bmc):
    """Chassis power and boot options of one QEMU machine."""

    def __init__(self, users: dict[str, str], port: int, machine: QemuMachine, boots_file: Path) -> None:
        super().__init__(users, port=port, address=LOOPBACK)
        self.machine = machine
        self.boots_file = boots_file
        self.override: BootOverride | None = None
        self.boots: list[str] = []
        self.iohandler = self._to_serial
        self._line: socket.socket | None = None

    def sessionless_data(self, data: bytes, sockaddr: Any) -> None:
        if len(data) >= 22 and data[4] == 6 and data[5] == 16:  # RMCP+ open session request
            Sha1OnlySession(self.authdata, self.kg, sockaddr, self.serversocket, data[16:], self.uuid, bmc=self)
            return
        super().sessionless_data(data, sockaddr)

    def get_power_state(self) -> str:
        return self.machine.power_state().value

    def power_on(self) -> None:
        if not self.machine.running():
            self.machine.power_on()
            self._booted()

    def power_off(self) -> None:
        self.machine.force_off()

    def power_shutdown(self) -> None:
        self.machine.press_power_button()

    def power_reset(self) -> None:
        self.machine.reset()
        self._booted()

    def power_cycle(self) -> None:
        self.machine.force_off()
        self.power_on()

    def is_active(self) -> bool:
        """Serial-over-LAN can start while the machine has power."""
        return self.machine.running()

    def deactivate_payload(self, request: dict[str, Any], session: Any) -> None:
        super().deactivate_payload(request, session)
        self._hang_up()

    def pump_console(self) -> None:
        """Forward what the guest wrote on its serial line to the SOL client, if one is attached."""
        line = self._serial_line() if self.sol is not None else None
        if line is None:
            return
        try:
            data = line.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.sol.send_data(data)
        else:  # QEMU exited: power off or a cycle; reconnect to the next one
            self._hang_up()

    def _to_serial(self, data: bytes | dict[str, Any]) -> None:
        """Keystrokes from the SOL client; a break request has no meaning on this line."""
        line = self._serial_line()
        if line is not None and not isinstance(data, dict):
            line.setblocking(True)
            line.sendall(data)
            line.setblocking(False)

    def _serial_line(self) -> socket.socket | None:
        if self._line is None and self.machine.running():
            line = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                line.connect(str(self.machine.serial_socket))
            except OSError:
                line.close()
                return None
            line.setblocking(False)
            self._line = line
        return self._line

    def _hang_up(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            line.close()

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        if request["data"][0] != _BOOT_FLAGS_PARAMETER:
            return super().get_system_boot_options(request, session)
        session.send_ipmi_response(data=boot_flags_reply(self.override))

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        if request["data"][0] != _BOOT_FLAGS_PARAMETER:
            return super().set_system_boot_options(request, session)
        try:
            self.override = parse_boot_flags(request["data"])
        except ValueError:
            return session.send_ipmi_response(code=0xCC)  # invalid data field
        session.send_ipmi_response()

    def _booted(self) -> None:
        """The firmware starts: use the override, forget it if it was for one boot only."""
        self.boots.append(self.override.device if self.override else "default")
        if self.override and not self.override.persistent:
            self.override = None
        staged = self.boots_file.with_suffix(".tmp")
        staged.write_text(json.dumps(self.boots))
        staged.replace(self.boots_file)


class LabIpmiBmc(LabDaemon):
    """The lab BMC as a child process, with the VM ``qemu_argv`` describes (without QMP or serial options).

    The password goes to the child in a mode-600 file, never on its command line.
    """

    name = "ipmi-bmc"

    def __init__(self, qemu_argv: Sequence[str], username: str, password: str, powered_on: bool = True) -> None:
        super().__init__()
        self.qemu_argv = list(qemu_argv)
        self.username = username
        self.password = password
        self.powered_on = powered_on
        self.host = LOOPBACK
        self.port = 0

    def __repr__(self) -> str:
        return f"LabIpmiBmc({self.host}:{self.port}, pid={self.pid})"

    def boots(self) -> list[str]:
        """The boot device of every boot so far (``default`` when none was set)."""
        assert self.workdir is not None, "the BMC is not started"
        path = self.workdir / BOOTS_FILE
        return json.loads(path.read_text()) if path.exists() else []

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        config = workdir / CONFIG_FILE
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(
                {
                    "port": self.port,
                    "users": {self.username: self.password},
                    "qemu": self.qemu_argv,
                    "powered_on": self.powered_on,
                },
                out,
            )
        return [sys.executable, "-m", "recovery.lab.ipmi_bmc", "--dir", str(workdir)]

    def _ready(self) -> bool:
        assert self.workdir is not None
        return (self.workdir / READY_FILE).exists()


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(workdir: Path) -> None:
    """Run the BMC until SIGTERM; the VM is powered off on the way out."""
    config = json.loads((workdir / CONFIG_FILE).read_text())
    machine = QemuMachine(config["qemu"], workdir / "qmp.sock", workdir / "serial.sock", workdir / "qemu.log")
    signal.signal(signal.SIGTERM, _stop_on_term)
    try:
        server = QemuBmc(config["users"], config["port"], machine, workdir / BOOTS_FILE)
        if config["powered_on"]:
            server.power_on()
        (workdir / READY_FILE).touch()
        while True:
            Session.wait_for_rsp(CONSOLE_POLL)
            server.pump_console()
    finally:
        machine.force_off()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the BMC's work dir holding bmc.json")
    serve(parser.parse_args(argv).dir)


if __name__ == "__main__":
    main()
