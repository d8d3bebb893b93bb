"""`boot_single` and `boot_normal`: bring a host up through out-of-band control.

`boot_single` makes the next boot single-user (or rescue), power-cycles the
host, logs in as root on the serial console and attaches that console as the
host's session: the steps after it (preserve, diff, find_clean, restore,
verify) run over the console as they would over SSH. `boot_normal` detaches
it, boots multi-user and waits for SSH with the pinned host key.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from recovery import secrets
from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, register
from recovery.hostile import for_terminal
from recovery.oob.base import BootMode, OobError, PowerState
from recovery.steps.oob_host import oob_driver
from recovery.transport.console import ConsoleSession
from recovery.transport.result import TransportError
from recovery.transport.ssh import HostKeyRefused, SshSession


class BootSingleParams(Strict):
    mode: Literal["single-user", "rescue"] = "single-user"
    import_pools: bool = Field(True, description="Import and mount the ZFS pools (single-user mode does not).")

#: Single-user mode starts no import service: load the module, import what the host knows, mount.
IMPORT_POOLS = ("/sbin/modprobe zfs && { /usr/sbin/zpool import -a -N 2>&1 | grep -v 'no pools available' >&2; "
                "/usr/sbin/zfs mount -a && /usr/sbin/zpool list -H -o name; }")


@register
class BootSingleStep(StepKind):
    kind = "boot_single"
    summary = "boot single-user through out-of-band control; continue on the serial console"
    Params = BootSingleParams

    def check(self, ctx: StepContext) -> Check:
        attached = ctx.session.attached(str(ctx.host))
        return Check.DONE if isinstance(attached, ConsoleSession) else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        host = str(ctx.host)
        started = time.monotonic()
        driver = oob_driver(ctx)
        try:
            driver.boot_once(BootMode(ctx.params.mode))
            if driver.power_state() is PowerState.ON:
                driver.power_cycle()
            else:
                driver.power_on()
            stream = driver.console()
        except OobError as exc:
            raise StepFailed(str(exc)) from None
        session = ConsoleSession(stream, _root_password(ctx), name=f"{host} console",
                                 login_timeout=ctx.timeout)
        try:
            session.open()
            probe = session.run("systemctl is-system-running 2>/dev/null; id -u", timeout=60)
        except TransportError as exc:
            session.close()
            raise StepFailed(f"{host}: no root shell on the console after the {ctx.params.mode} boot: {exc}") from None
        ctx.session.attach(host, session)
        pools = self._import_pools(ctx, session) if ctx.params.import_pools else []
        state = probe.stdout.decode(errors="replace").split()
        ctx.note(f"{host}: {ctx.params.mode} root shell on the console after {time.monotonic() - started:.1f} s")
        return {"mode": ctx.params.mode, "system": state[0] if state else "?", "pools": pools,
                "seconds": round(time.monotonic() - started, 1)}

    def _import_pools(self, ctx: StepContext, session: ConsoleSession) -> list[str]:
        result = session.run(IMPORT_POOLS, timeout=ctx.timeout)
        if result.exit_code != 0:
            raise StepFailed(f"{ctx.host}: importing the ZFS pools on the console failed "
                             f"(exit {result.exit_code}): {for_terminal(result.stderr, 300)}")
        return result.stdout.decode(errors="replace").split()


def _root_password(ctx: StepContext) -> str | None:
    ref = ctx.inventory.hosts[str(ctx.host)].root_password
    return secrets.resolve(ref, f"hosts.{ctx.host}.root_password") if ref else None


class BootNormalParams(Strict):
    ssh_wait: float = Field(2.0, gt=0, description="Seconds between SSH attempts while the host boots.")


@register
class BootNormalStep(StepKind):
    kind = "boot_normal"
    summary = "boot multi-user through out-of-band control and wait for SSH (pinned host key)"
    Params = BootNormalParams

    def check(self, ctx: StepContext) -> Check:
        if isinstance(ctx.session.attached(str(ctx.host)), ConsoleSession):
            return Check.NOT_DONE
        try:
            ctx.session(str(ctx.host)).open()
        except HostKeyRefused:
            raise
        except TransportError:
            return Check.NOT_DONE
        return Check.DONE

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        host = str(ctx.host)
        started = time.monotonic()
        ctx.session.detach(host)
        driver = oob_driver(ctx)
        try:
            driver.boot_once(BootMode.NORMAL)
            driver.power_cycle()
        except OobError as exc:
            raise StepFailed(str(exc)) from None
        self._wait_for_ssh(ctx)
        ctx.note(f"{host}: multi-user, SSH answers with the pinned key after {time.monotonic() - started:.1f} s")
        return {"seconds": round(time.monotonic() - started, 1)}

    def _wait_for_ssh(self, ctx: StepContext) -> None:
        host = str(ctx.host)
        retrying = Retrying(stop=stop_after_delay(ctx.timeout), wait=wait_fixed(ctx.params.ssh_wait),
                            retry=retry_if_exception_type(TransportError), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    _fresh_ssh(ctx, host)
        except HostKeyRefused:
            raise
        except TransportError as exc:
            raise StepFailed(f"{host} did not answer SSH within {ctx.timeout:g} s after the normal boot: {exc}") from None


def _fresh_ssh(ctx: StepContext, host: str) -> SshSession:
    ctx.session.detach(host)  # a failed attempt leaves a dead connection behind
    session = ctx.session(host)
    session.open()
    return session
