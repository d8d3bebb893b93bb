"""`boot_single` and `boot_normal`: bring a host up through out-of-band control.

`boot_single` makes the next boot single-user (or rescue), power-cycles the
host, logs in as root on the serial console and attaches that console as the
host's session: the steps after it (preserve, diff, find_clean, restore,
verify) run over the console as they would over SSH. `boot_normal` detaches
it, boots multi-user and waits for SSH with the pinned host key.
"""

from __future__ import annotations

import shlex
import time
from typing import Any, Literal

from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from recovery.config.base import Strict
from recovery.config.inventory import Inventory, offers_rescue
from recovery.config.targets import Target
from recovery.engine.access import Channel
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.errors import is_transient
from recovery.hostile import for_terminal
from recovery.oob.base import BootMode, PowerState
from recovery.steps.zfs_host import protected
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused


class BootSingleParams(Strict):
    mode: Literal["auto", "single-user", "rescue"] = Field(
        "auto", description="rescue: a known-good rescue image, nothing of the host runs; single-user: the "
                            "host's own system in maintenance mode; auto: rescue where the host's BMC offers "
                            "it (hosts.NAME.oob), single-user otherwise.")
    import_pools: bool = Field(True, description="Import and mount the ZFS pools (single-user mode does not).")

#: Single-user mode starts no import service: load the module, import what the host knows, mount.
IMPORT_POOLS = ("/sbin/modprobe zfs && { /usr/sbin/zpool import -a -N 2>&1 | grep -v 'no pools available' >&2; "
                "/usr/sbin/zfs mount -a && /usr/sbin/zpool list -H -o name; }")
#: Where the rescue system imports the host's pools: every mountpoint lands below it.
RESCUE_ALTROOT = "/mnt/host"
#: Before the host boots its own system again: every pool the rescue system imported, exported.
#: The mounts below the altroot go first, deepest first: the data pool's datasets sit inside the
#: boot environment's mount, and exporting the root pool first would find it busy.
EXPORT_POOLS = ("/usr/bin/findmnt -rn -o TARGET | grep -E '^" + RESCUE_ALTROOT + "(/|$)' | LC_ALL=C sort -r | "
                "while read -r mountpoint; do /usr/bin/umount \"$mountpoint\" || exit 1; done "
                "&& /usr/sbin/zpool export -a")
#: The host's file systems are read there, never run: nothing on them executes or is a device.
INSPECT_OPTIONS = "ro,nosuid,nodev,noexec"


def rescue_import(datasets: list[str]) -> str:
    """The rescue system imports the host's pools under :data:`RESCUE_ALTROOT` with nothing mounted,
    then mounts the protected datasets read-only, parents first (``zfs diff`` needs them mounted).

    ``-f``: the pools were last imported by the host itself, which is powered
    off and now runs the rescue image, so no other system holds them.
    """
    quoted = " ".join(shlex.quote(d) for d in datasets)
    return ("/sbin/modprobe zfs && { /usr/sbin/zpool import -a -N -f -R " + RESCUE_ALTROOT
            + " 2>&1 | grep -v 'no pools available' >&2; "
            f"/usr/sbin/zfs list -H -o mountpoint,name -- {quoted} | LC_ALL=C sort | "
            "while IFS=$'\\t' read -r mountpoint name; do case $mountpoint in /*) "
            f"/usr/sbin/zfs mount -o {INSPECT_OPTIONS} \"$name\" || exit 1;; esac; done "
            "&& /usr/sbin/zpool list -H -o name; }")


#: The first line of the first command on the console: what systemd says of the system's state.
SYSTEM_STATE = 'printf "system-state %s\\n" "$(systemctl is-system-running 2>/dev/null)"'


def first_command(import_command: str) -> str:
    """The system's state, then the pool import: one command, as every command on a console is a
    handful of processes to frame on the host (a slow step on an emulated one)."""
    return f"{SYSTEM_STATE}; {import_command}" if import_command else SYSTEM_STATE


def system_and_pools(stdout: bytes) -> tuple[str, list[str]]:
    """The state :data:`SYSTEM_STATE` printed and the pools the import listed after it."""
    lines = stdout.decode(errors="replace").splitlines()
    state = lines[0].removeprefix("system-state ").strip() if lines and lines[0].startswith("system-state") else ""
    return state or "?", [word for line in lines[1:] for word in line.split()]


def boot_mode(inventory: Inventory, host: str, wanted: str) -> str:
    """The mode a boot_single step boots ``host`` in: ``auto`` is rescue where its BMC offers it."""
    if wanted != "auto":
        return wanted
    return "rescue" if offers_rescue(inventory.hosts[host].oob) else "single-user"


class BootSingleOutputs(StepOutputs):
    mode: str = ""
    system: str = ""
    pools: list[str] = Field(default_factory=list)
    seconds: float = 0.0


@register
class BootSingleStep(StepKind):
    kind = "boot_single"
    summary = ("boot the rescue image (or single-user) through out-of-band control; continue on the serial "
               "console")
    Params = BootSingleParams
    Outputs = BootSingleOutputs

    def check(self, ctx: StepContext) -> Check:
        return Check.NOT_DONE if ctx.here.channel is Channel.SSH else Check.DONE

    def apply(self, ctx: StepContext) -> BootSingleOutputs:
        host = str(ctx.host)
        mode = boot_mode(ctx.inventory, host, ctx.params.mode)
        started = time.monotonic()
        driver = ctx.here.driver()
        driver.boot_once(BootMode(mode))
        if driver.power_state() is PowerState.ON:
            driver.power_cycle()
        else:
            driver.power_on()
        rescue = mode == "rescue"
        session = ctx.here.console(login_timeout=ctx.timeout, rescue=rescue)
        import_command = (rescue_import(protected(ctx)) if rescue else IMPORT_POOLS) if ctx.params.import_pools else ""
        try:
            session.open()
            first = session.run(first_command(import_command), timeout=ctx.timeout)
        except TransportError as exc:
            session.close()
            raise StepFailed(f"{host}: no root shell on the console after the {mode} boot: {exc}",
                             transient=exc.transient) from None
        ctx.here.move(Channel.RESCUE if rescue else Channel.CONSOLE, session)
        state, pools = system_and_pools(first.stdout)
        if import_command and first.exit_code != 0:
            raise StepFailed(f"{host}: importing the ZFS pools on the console failed "
                             f"(exit {first.exit_code}): {for_terminal(first.stderr, 300)}")
        seconds = round(time.monotonic() - started, 1)
        ctx.note(f"{host}: {mode} root shell on the console after {seconds:.1f} s")
        return BootSingleOutputs(mode=mode, system=for_terminal(state, 40),
                                 pools=[for_terminal(p, 100) for p in pools], seconds=seconds)

    def outputs_when_done(self, ctx: StepContext) -> BootSingleOutputs:
        return BootSingleOutputs(already_done=True, mode=ctx.here.channel.value)

    def foresee(self, inventory: Inventory, target: Target, before: tuple[str, ...],
                params: Any = None) -> dict[str, str]:
        wanted = params.mode if params is not None else "auto"
        return {h: ("rescue image through the BMC: nothing of the host runs"
                    if boot_mode(inventory, h, wanted) == "rescue" else
                    "single-user mode: the host's own system and tools"
                    + (f" (no rescue medium in hosts.{h}.oob)" if wanted == "auto" else ""))
                for h in target.hosts}


class BootNormalParams(Strict):
    ssh_wait: float = Field(0.5, gt=0, description="Seconds between SSH attempts while the host boots.")
    power_cycles: int = Field(2, ge=1, le=5, description=(
        "Power cycles before the step gives up: a host whose SSH stays silent for the step's timeout "
        "after one (hung in firmware or early boot) is powered off and on again, up to this many in all."))


class BootNormalOutputs(StepOutputs):
    seconds: float = 0.0


@register
class BootNormalStep(StepKind):
    kind = "boot_normal"
    summary = "boot multi-user through out-of-band control and wait for SSH (pinned host key)"
    Params = BootNormalParams
    Outputs = BootNormalOutputs

    def check(self, ctx: StepContext) -> Check:
        if ctx.here.channel is not Channel.SSH:
            return Check.NOT_DONE
        try:
            ctx.here.session().open()
        except HostKeyRefused:
            raise
        except TransportError:
            ctx.here.reset()
            return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> BootNormalOutputs:
        host = str(ctx.host)
        started = time.monotonic()
        if ctx.here.channel is Channel.RESCUE:
            self._export_pools(ctx)
        driver = ctx.here.driver()
        cycles = ctx.params.power_cycles
        for cycle in range(1, cycles + 1):
            driver.boot_once(BootMode.NORMAL)
            driver.power_cycle()
            ctx.here.move(Channel.SSH)
            if (silent := self._wait_for_ssh(ctx)) is None:
                break
            said = for_terminal(f"{host} did not answer SSH within {ctx.timeout:g} s after the normal boot: "
                                f"{silent}", 400, newlines=False)
            if cycle == cycles:
                raise StepFailed(said)
            ctx.note(f"{said}; power cycle {cycle + 1} of {cycles}")
        seconds = round(time.monotonic() - started, 1)
        ctx.note(f"{host}: multi-user, SSH answers with the pinned key after {seconds:.1f} s")
        return BootNormalOutputs(seconds=seconds)

    def _export_pools(self, ctx: StepContext) -> None:
        """The rescue system hands the pools back exported: a pool left imported by another
        system's host id is one the host's own initramfs may refuse to import at boot."""
        result = ctx.here.session().run(EXPORT_POOLS, timeout=ctx.timeout)
        if result.exit_code != 0:
            raise StepFailed(f"{ctx.host}: exporting the host's pools from the rescue system failed "
                             f"(exit {result.exit_code}): {for_terminal(result.stderr, 300)}; the host "
                             "stays in the rescue system")

    def _wait_for_ssh(self, ctx: StepContext) -> TransportError | None:
        """None once SSH answers with the pinned key; what it last said if it stayed silent for the
        step's timeout. A refused key or login is raised at once: no boot mends that."""
        retrying = Retrying(stop=stop_after_delay(ctx.timeout), wait=wait_fixed(ctx.params.ssh_wait),
                            retry=retry_if_exception(is_transient), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    ctx.here.reset()  # a failed attempt leaves a dead connection behind
                    ctx.here.session().open()
        except TransportError as exc:
            if not exc.transient:
                raise
            return exc
        return None
