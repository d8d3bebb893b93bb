"""The lab BMC's command line: what a BMC key may do, and nothing else.

sshd runs this for every login with the BMC key (``command=`` in
authorized_keys), whatever the client asked for; the request arrives in
``$SSH_ORIGINAL_COMMAND`` and is matched word for word against the command
set documented in ``recovery.oob.lab``. Anything else (a shell, scp, sftp,
an empty request) is refused with exit status 2 and a message on stderr.

Machines are lab guests recorded in the state directory
(``recovery.lab.bmc_machines``). Power on and cycle boot in the mode that
``boot once`` recorded and then reset it to normal; a graceful power off
presses the ACPI power button and leaves the rest to the guest, as a BMC
does (a hung or single-user system may ignore it); a forced one quits QEMU,
killing the process the lab recorded if it does not go. ``console`` relays
bytes between the SSH channel and the guest's serial socket until either
side closes.

A rescue boot is the BMC's virtual media: the lab's known-good rescue image,
attached so that it cannot change, with the host's disks after it. Before
every rescue boot its sha256 is checked against the one recorded when it was
built; a changed or unrecorded image is refused and the machine is left as
it was.

Usage (by sshd): ``python -m recovery.lab.bmc_shell STATE_DIR``
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from pathlib import Path

from recovery.hostile import for_terminal
from recovery.lab.bmc_machines import NORMAL, MachineStore, UnknownMachine
from recovery.lab.image import RescueImageRefused, check_rescue
from recovery.lab.power import power_of
from recovery.lab.qmp import QmpError
from recovery.lab.vm import BootMode as GuestBootMode
from recovery.lab.vm import Guest, GuestError
from recovery.oob.base import BootMode, PowerState
from recovery.oob.lab import EXIT_FAILED, EXIT_REFUSED

USAGE = (
    "commands: power status <machine> | power on <machine> [normal|single-user|rescue]"
    " | power off <machine> [graceful|forced] | power cycle <machine>"
    " | boot once <machine> normal|single-user|rescue | rescue check <machine> | console <machine>"
)
#: A QEMU that does not answer on its monitor this long after starting has failed.
QMP_READY_TIMEOUT = 10.0
CONSOLE_CONNECT_TIMEOUT = 10.0
_CHUNK = 65536


class Refused(Exception):
    """The request is not one this BMC grants."""


def guest_mode(mode: str) -> GuestBootMode:
    """The guest boot mode for a CLI mode word."""
    try:
        return GuestBootMode(BootMode(mode).value)
    except ValueError:
        raise Refused(f"unknown boot mode {for_terminal(mode, 40)!r} (normal, single-user, rescue)") from None


def check_medium(guest: Guest, mode: GuestBootMode) -> None:
    """Before a rescue boot, the rescue image must be the one the build recorded."""
    if mode is GuestBootMode.RESCUE:
        try:
            check_rescue(guest.image.rescue_disk, guest.image.rescue_sha256)
        except RescueImageRefused as exc:
            raise Refused(f"rescue boot of {guest.name}: {exc}") from None


def rescue_check(store: MachineStore, name: str) -> str:
    """What a rescue boot of the machine would start from, checked as before a boot (nothing started)."""
    guest = store.load(name).guest()
    check_medium(guest, GuestBootMode.RESCUE)
    return f"rescue image sha256 {guest.image.rescue_sha256.read_text().split()[0]} verified"


def power_status(store: MachineStore, name: str) -> str:
    guest = store.load(name).guest()
    if not guest.running():
        return PowerState.OFF.value
    try:
        return power_of(guest.qmp("query-status")["status"]).value  # type: ignore[index]
    except QmpError:
        if guest.running():
            raise
        return PowerState.OFF.value


def power_on(store: MachineStore, name: str, mode: str | None) -> str:
    with store.locked(name):
        record = store.load(name)
        guest = record.guest()
        if guest.running():
            return "already on"
        boot = guest_mode(mode or record.next_boot)
        check_medium(guest, boot)
        _start(guest, boot)
        store.save(record.with_next_boot(NORMAL))
    return f"powered on ({boot.value})"


def power_off(store: MachineStore, name: str, how: str) -> str:
    with store.locked(name):
        guest = store.load(name).guest()
        if not guest.running():
            return "already off"
        if how == "graceful":
            guest.qmp("system_powerdown")
            return "power button pressed"
        guest.stop()
    return "powered off"


def power_cycle(store: MachineStore, name: str) -> str:
    with store.locked(name):
        record = store.load(name)
        guest = record.guest()
        boot = guest_mode(record.next_boot)
        check_medium(guest, boot)
        if guest.running():
            guest.stop()
        _start(guest, boot)
        store.save(record.with_next_boot(NORMAL))
    return f"power cycled ({boot.value})"


def boot_once(store: MachineStore, name: str, mode: str) -> str:
    guest_mode(mode)
    with store.locked(name):
        store.save(store.load(name).with_next_boot(mode))
    return f"next boot: {mode}"


def console(store: MachineStore, name: str) -> None:
    guest = store.load(name).guest()
    if not guest.running():
        raise Refused(f"{name} is powered off; its serial line is dead")
    serial = guest.console(CONSOLE_CONNECT_TIMEOUT)
    try:
        relay(serial.sock)
    finally:
        serial.close()


def relay(serial: socket.socket) -> None:
    """Bytes both ways between stdin/stdout (the SSH channel) and the serial socket, until one side ends."""
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "operator")
    selector.register(serial, selectors.EVENT_READ, "machine")
    while True:
        for key, _ in selector.select():
            if key.data == "operator":
                data = os.read(sys.stdin.fileno(), _CHUNK)
                if not data:
                    return
                serial.sendall(data)
            else:
                data = serial.recv(_CHUNK)
                if not data:
                    raise GuestError("the serial line closed (the machine powered off)")
                _write_out(data)


def _write_out(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(sys.stdout.fileno(), view) :]


def _start(guest: Guest, mode: GuestBootMode) -> None:
    """Start QEMU and return once its monitor answers, so a console attached next finds the serial socket."""
    guest.start(mode)
    deadline = time.monotonic() + QMP_READY_TIMEOUT
    while True:
        try:
            guest.qmp("query-status")
            return
        except QmpError:
            if not guest.running() or time.monotonic() > deadline:
                raise GuestError(f"{guest.name}: QEMU did not come up; see {guest.dir / 'qemu.log'}") from None
            time.sleep(0.1)


def dispatch(store: MachineStore, request: str) -> str | None:
    """Run one request; returns the answer to print (None for the console, which streams)."""
    match request.split():
        case ["power", "status", name]:
            return power_status(store, name)
        case ["power", "on", name]:
            return power_on(store, name, None)
        case ["power", "on", name, mode]:
            return power_on(store, name, mode)
        case ["power", "off", name]:
            return power_off(store, name, "graceful")
        case ["power", "off", name, ("graceful" | "forced") as how]:
            return power_off(store, name, how)
        case ["power", "cycle", name]:
            return power_cycle(store, name)
        case ["boot", "once", name, mode]:
            return boot_once(store, name, mode)
        case ["rescue", "check", name]:
            return rescue_check(store, name)
        case ["console", name]:
            console(store, name)
            return None
    shown = for_terminal(request, 80) if request else "(none: an interactive login)"
    raise Refused(f"not a BMC command: {shown}; {USAGE}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m recovery.lab.bmc_shell STATE_DIR", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer = dispatch(MachineStore(Path(argv[0])), os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    except Refused as exc:
        return _fail(EXIT_REFUSED, f"refused: {exc}")
    except UnknownMachine as exc:
        return _fail(EXIT_REFUSED, f"refused: no machine named {for_terminal(str(exc), 64)!r} on this BMC")
    except (GuestError, QmpError, OSError) as exc:
        return _fail(EXIT_FAILED, f"failed: {exc}")
    if answer:
        print(answer)
    return 0


def _fail(code: int, message: str) -> int:
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
