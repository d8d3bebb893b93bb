"""Can a run reach the host: its SSH login, its BMC, its console, its secrets, its rescue image?

These items decide whether `recover TARGET` can do its work at all, so they
are also its preflight. None of them changes anything: SSH runs ``true``, the
BMC is asked for the power state, and the console session logs out again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import paramiko

from recovery import secrets
from recovery.actions.check.model import Item, failed, passed, warned
from recovery.config.inventory import Host, Inventory, IpmiOob, LabOob, LibvirtOob, RedfishOob, offers_rescue
from recovery.engine.access import HostAccess, oob_driver, ssh_target
from recovery.errors import Fault
from recovery.oob.base import OobDriver, OobError, OobNotSupported
from recovery.transport.result import TransportError
from recovery.transport.ssh import SshSession

#: Seconds to wait for a TCP connection: a preflight is quick or it says so.
CONNECT_TIMEOUT = 5.0
#: Seconds a deep check waits for the console login.
CONSOLE_LOGIN_TIMEOUT = 60.0


def ssh_session(inventory: Inventory, name: str) -> tuple[Item, SshSession | None]:
    """Log in with the pinned host key and run ``true``; the open session serves the other items."""
    ssh = inventory.hosts[name].ssh
    key = Path(ssh.key).expanduser()
    fix_key = f"put the private key at {key} or correct hosts.{name}.ssh.key"
    if not key.is_file():
        return failed("ssh", f"SSH key file {key} does not exist (hosts.{name}.ssh.key)", fix_key), None
    try:
        target = dataclasses.replace(ssh_target(inventory, name), connect_timeout=CONNECT_TIMEOUT)
    except (TransportError, OSError, ValueError) as exc:
        return failed("ssh", str(exc), _ssh_fix(name, str(exc))), None
    if not target.host_keys:
        return failed("ssh", f"no host key pinned for {target.address}:{target.port}",
                      f"pin it: hosts.{name}.ssh.host_key = 'TYPE BASE64' (from a trusted copy, not the network)"), None
    session = SshSession(target)
    try:
        result = session.run("true", timeout=CONNECT_TIMEOUT * 2)
    except (TransportError, OSError, ValueError) as exc:
        session.close()
        return failed("ssh", str(exc), _ssh_fix(name, str(exc))), None
    if not result.ok:
        session.close()
        return failed("ssh", f"logged in, but `true` exited {result.exit_code}", "look at the account's shell"), None
    return passed("ssh", f"{ssh.user}@{target.address}:{target.port}, host key pinned and matching"), session


def _ssh_fix(name: str, message: str) -> str:
    if "host key" in message:
        return (f"if the host was rebuilt, pin its new key in hosts.{name}.ssh (from a trusted copy); "
                "otherwise treat this as a possible impersonation")
    if "refused" in message and "login" in message:
        return f"authorize the orchestrator's public key for hosts.{name}.ssh.user on the host"
    return "check the address and port, that sshd runs, and the network path from here"


def own_public_key(inventory: Inventory, name: str) -> str | None:
    """'TYPE BASE64' of the orchestrator's key for ``name`` (None if the file cannot be read)."""
    try:
        key = paramiko.PKey.from_path(Path(inventory.hosts[name].ssh.key).expanduser())
    except (OSError, paramiko.SSHException, ValueError):
        return None
    return f"{key.get_name()} {key.get_base64()}"


def bmc(inventory: Inventory, name: str) -> Item:
    """The BMC answers a power-state query (nothing is switched) and its identity is pinned."""
    host = inventory.hosts[name]
    if host.oob is None:
        return failed("bmc", "no out-of-band block: contain and boot need the BMC",
                      f"add hosts.{name}.oob (driver = 'ipmi', 'redfish', 'libvirt' or 'lab')")
    try:
        driver = oob_driver(inventory, name)
        try:
            state = driver.power_state()
        finally:
            driver.close()
    except (OobError, Fault, TransportError, secrets.SecretError) as exc:
        return failed("bmc", str(exc), "check the BMC's address, credentials and pinned key; "
                                       "it must answer from the management network")
    pinning = _bmc_pinning(host)
    if pinning:
        return warned("bmc", f"power {state.value}; {pinning[0]}", pinning[1])
    return passed("bmc", f"power {state.value}, identity pinned")


def _bmc_pinning(host: Host) -> tuple[str, str] | None:
    """Why the BMC's identity is not pinned, and the fix (None when it is)."""
    oob = host.oob
    if isinstance(oob, IpmiOob):
        return ("IPMI cannot prove the BMC's identity", "keep the BMC on an isolated management network, "
                                                        "or use its Redfish interface with TLS verified")
    if isinstance(oob, RedfishOob) and (not oob.verify_tls or oob.url.startswith("http:")):
        return ("Redfish TLS certificate not verified", "use https:// and verify_tls = true (with the BMC's CA)")
    assert isinstance(oob, (LabOob, LibvirtOob))  # an SSH key pinned, or a local socket or ssh's own pin
    return None


def console(access: HostAccess) -> Item:
    """Log in on the serial console through the BMC, run a reading command, log out again (``--deep`` only).

    A host in single-user mode (a recovery run may hold it there) keeps its
    shell: ``exit`` would end sulogin and let the host boot on.
    """
    try:
        session = access.console(login_timeout=CONSOLE_LOGIN_TIMEOUT)
        try:
            result = session.run("systemctl is-system-running 2>/dev/null || true", timeout=30)
        finally:
            session.close()
        maintenance = b"maintenance" in result.stdout
        if not maintenance:
            _log_out(access)
    except (OobError, Fault, TransportError, secrets.SecretError) as exc:
        return failed("console", str(exc), "check the root password reference (root_password) and that "
                                           "the console has a login (a getty on the serial line)")
    if not result.ok:
        return failed("console", f"console shell answered with exit {result.exit_code}", "look at root's shell")
    if maintenance:
        return passed("console", "root shell on the serial console works; the host is in single-user mode, "
                                 "so its shell was left as it was")
    return passed("console", "root login on the serial console works (logged out again)")


def _log_out(access: HostAccess) -> None:
    """End the console shell, so the next run meets a login prompt, not a shell left logged in."""
    stream = access.driver().console()
    try:
        stream.write(b"exit\n")
    finally:
        stream.close()


def host_secrets(inventory: Inventory, name: str) -> Item:
    """Every secret the host's entry references resolves (read locally; the value is never shown)."""
    host = inventory.hosts[name]
    refs = {f"hosts.{name}.root_password": host.root_password,
            f"hosts.{name}.oob.password": getattr(host.oob, "password", None)}
    return secrets_item({where: ref for where, ref in refs.items() if ref})


def secrets_item(refs: dict[str, str]) -> Item:
    problems = []
    for where, ref in refs.items():
        try:
            secrets.resolve(ref, where)
        except secrets.SecretError as exc:
            problems.append(str(exc))
    if problems:
        return failed("secrets", "; ".join(problems), "set the variable or create the file the reference names")
    return passed("secrets", f"{len(refs)} reference(s) resolve" if refs else "no secrets referenced")


def rescue_image(host: Host, driver: Callable[[], OobDriver]) -> Item:
    """The rescue medium the BMC would boot: the lab BMC checks its image's sha256 as before a boot;
    IPMI and Redfish cannot show what the medium holds, so that stays for a person to verify."""
    if not offers_rescue(host.oob):
        return warned("rescue-image", "no rescue medium configured: recovery boots the host's own system "
                                      "single-user, whose tools a rootkit can deceive",
                      "give the BMC a known-good rescue image (hosts.NAME.oob: rescue / rescue_image)")
    try:
        return passed("rescue-image", driver().check_rescue())
    except OobNotSupported as exc:
        return warned("rescue-image", str(exc), "verify the rescue medium's checksum by hand")
    except OobError as exc:
        return failed("rescue-image", str(exc), "replace the rescue image with the trusted copy; find out who "
                                                "changed it")