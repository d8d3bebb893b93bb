"""libvirt as the out-of-band side of a virtual fleet: power and the next boot's kernel command line through
the hypervisor, the serial console through ``virsh console``.

A virtual machine has no BMC; its hypervisor plays that part. It powers the
machine, owns its definition and relays its serial line whatever the guest's
own system does, so it is below anything an intruder controls. Every request
is a ``virsh`` command on the connection URI the inventory names (a local
socket, or ``qemu+ssh://`` with the host key pinned in ssh's own config).

libvirt has no "next boot only" setting. A one-time single-user boot is made
of two definitions: :meth:`LibvirtDriver.boot_once` defines the domain with
the single-user command line and keeps the normal one in the domain's own
metadata; the first start after that puts the normal one back, so the boot
after it is normal again, also when that start comes from another process (a
resumed run). Only a domain booted directly from a kernel (``<os><cmdline>``)
can be told to come up single-user; a rescue medium is not offered.
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from recovery.oob.base import (
    BmcEndpoint,
    BootMode,
    OobDriver,
    OobError,
    OobNotSupported,
    OobRefused,
    OobTimeout,
    OobUnreachable,
    PowerState,
    oob_error,
)

VIRSH = "virsh"
#: A virsh request returns once libvirt took it; longer means the hypervisor is in trouble.
COMMAND_TIMEOUT = 60.0
#: What the kernel command line gains for a single-user boot (systemd's maintenance shell, sulogin).
SINGLE_USER_ARGS = "systemd.unit=rescue.target"
#: Where the normal command line waits while a one-time boot is pending.
METADATA_NS = "urn:recovery:boot-once"
#: ``virsh console``'s escape character (Ctrl-]): a byte of it sent to the console would end the session.
ESCAPE = b"\x1d"
#: How long a stopped ``virsh console`` may take to exit before it is killed, in seconds.
CLOSE_GRACE = 5.0
_STATES = {
    "running": PowerState.ON, "idle": PowerState.ON, "paused": PowerState.ON, "in shutdown": PowerState.ON,
    "pmsuspended": PowerState.ON, "shut off": PowerState.OFF, "crashed": PowerState.OFF,
}  # fmt: skip

ET.register_namespace("recovery", METADATA_NS)


@dataclass(frozen=True, kw_only=True)
class LibvirtEndpoint(BmcEndpoint):
    """A domain on a libvirt connection; ``address`` is the connection URI. No login of its own."""

    domain: str
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def where(self) -> str:
        return self.address


class LibvirtDriver(OobDriver):
    """Power, one-time single-user boot and serial console of one libvirt domain."""

    protocol = "libvirt"
    endpoint: LibvirtEndpoint

    def power_state(self) -> PowerState:
        answer = self._virsh("read power state", "domstate", self.endpoint.domain).strip()
        if answer not in _STATES:
            raise self._error(OobError, "read power state", f"unexpected domain state {answer!r}")
        return _STATES[answer]

    def power_on(self) -> None:
        if self.power_state() is PowerState.OFF:
            self._start()

    def power_off(self, graceful: bool) -> None:
        if self.power_state() is PowerState.OFF:
            return
        if graceful:
            self._virsh("graceful power off", "shutdown", self.endpoint.domain)
        else:
            self._virsh("forced power off", "destroy", self.endpoint.domain)

    def power_cycle(self) -> None:
        """A forced stop and a fresh start: a reset would keep the running definition, not the next boot's."""
        if self.power_state() is PowerState.ON:
            self._virsh("power cycle (stop)", "destroy", self.endpoint.domain)
        self._start()

    def boot_once(self, mode: BootMode) -> None:
        if mode is BootMode.RESCUE:
            raise OobNotSupported(f"{self.host}: the libvirt driver has no rescue medium for "
                                  f"{self.endpoint.domain}; single-user mode is what it offers")
        definition = self._definition("one-time boot")
        if mode is BootMode.NORMAL:
            changed = restore_normal(definition)
        else:
            changed = once_single_user(definition, f"one-time boot {mode.value} of {self.endpoint.domain}")
        if changed:
            self._define(f"one-time boot {mode.value}", definition)

    def console(self) -> VirshConsole:
        """The domain's serial line through ``virsh console`` on a pseudo-terminal; the caller closes it."""
        return VirshConsole(self.endpoint)

    # -- helpers -------------------------------------------------------------

    def _start(self) -> None:
        """Start, then put the normal command line back: only this boot was to be different."""
        self._virsh("power on", "start", self.endpoint.domain)
        definition = self._definition("after power on")
        if restore_normal(definition):
            self._define("after power on: normal boot again", definition)

    def _definition(self, operation: str) -> ET.Element:
        """The definition the next start uses (``--inactive``), from the hypervisor, which is trusted."""
        text = self._virsh(operation, "dumpxml", "--inactive", self.endpoint.domain)
        try:
            return ET.fromstring(text)
        except ET.ParseError as exc:
            raise self._error(OobError, operation, f"the domain definition is not XML: {exc}") from None

    def _define(self, operation: str, definition: ET.Element) -> None:
        with tempfile.NamedTemporaryFile("wb", suffix=".xml", prefix="recovery-domain-") as staged:
            staged.write(ET.tostring(definition))
            staged.flush()
            self._virsh(operation, "define", staged.name)

    def _virsh(self, operation: str, *args: str) -> str:
        argv = [VIRSH, "-q", "-c", self.endpoint.address, *args]
        try:
            done = subprocess.run(argv, check=False, capture_output=True, timeout=COMMAND_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise self._error(OobTimeout, operation, f"virsh gave no answer within {COMMAND_TIMEOUT:g} s") from None
        except OSError as exc:
            raise self._error(OobError, operation, f"cannot run virsh: {exc}") from None
        if done.returncode:
            detail = done.stderr.decode(errors="replace").strip()[:500] or f"virsh exited {done.returncode}"
            raise self._error(_kind_of(detail), operation, detail)
        return done.stdout.decode(errors="replace")


def _kind_of(detail: str) -> type[OobError]:
    """Which failure a virsh error message means: the hypervisor unreachable, a refusal, or else."""
    lowered = detail.lower()
    if "failed to connect" in lowered or "no such file" in lowered or "connection refused" in lowered:
        return OobUnreachable
    if "authentication" in lowered or "permission denied" in lowered or "access denied" in lowered:
        return OobRefused
    return OobError


def once_single_user(definition: ET.Element, where: str) -> bool:
    """Make ``definition`` boot single-user and keep its normal command line in the metadata.

    False when it already is (a repeated request keeps the first normal line).
    Raises OobNotSupported for a domain that does not boot a kernel directly.
    """
    cmdline = definition.find("os/cmdline")
    if definition.find("os/kernel") is None or cmdline is None:
        raise OobNotSupported(f"{where}: the domain boots from its disk's boot loader, so libvirt cannot set "
                              "its kernel command line (single-user needs <os><kernel> and <cmdline>)")
    if _pending(definition) is not None:
        return False
    normal = cmdline.text or ""
    metadata = definition.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(definition, "metadata")
    ET.SubElement(metadata, f"{{{METADATA_NS}}}boot-once", {"mode": BootMode.SINGLE_USER.value, "normal": normal})
    cmdline.text = f"{normal} {SINGLE_USER_ARGS}".strip()
    return True


def restore_normal(definition: ET.Element) -> bool:
    """Put back the normal command line a pending one-time boot kept; False when none is pending."""
    pending = _pending(definition)
    if pending is None:
        return False
    metadata, record = pending
    cmdline = definition.find("os/cmdline")
    if cmdline is not None:
        cmdline.text = record.get("normal", "")
    metadata.remove(record)
    return True


def _pending(definition: ET.Element) -> tuple[ET.Element, ET.Element] | None:
    metadata = definition.find("metadata")
    record = None if metadata is None else metadata.find(f"{{{METADATA_NS}}}boot-once")
    return None if metadata is None or record is None else (metadata, record)


class VirshConsole:
    """``virsh console --force`` on a pseudo-terminal, as a ConsoleStream; stopped by its own PID on close.

    ``--force`` takes the console over from a stale session: during a recovery
    the operator's tool must not be locked out.
    """

    def __init__(self, endpoint: LibvirtEndpoint) -> None:
        self.endpoint = endpoint
        self._fd, terminal = os.openpty()
        try:
            self._process = subprocess.Popen(
                [VIRSH, "-c", endpoint.address, "console", "--force", endpoint.domain],
                stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            os.close(self._fd)
            raise self._error(f"cannot run virsh: {exc}") from None
        finally:
            os.close(terminal)

    def __repr__(self) -> str:
        return f"VirshConsole({self.endpoint.host}, {self.endpoint.domain})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        try:
            data = os.read(self._fd, 65536)
        except OSError:
            data = b""
        if not data:
            raise self._error(f"virsh console ended (exit {self._process.poll()})")
        return data

    def write(self, data: bytes) -> None:
        if ESCAPE in data:
            raise self._error("refused to send Ctrl-] (virsh's escape character would end the console)")
        if self._process.poll() is not None:
            raise self._error(f"virsh console ended (exit {self._process.returncode})")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(CLOSE_GRACE)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _error(self, detail: str) -> OobError:
        return oob_error(OobError, self.endpoint, f"libvirt at {self.endpoint.where}", "console", detail)
