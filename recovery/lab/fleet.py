"""The lab fleet: eu-web, us-web and people as QEMU guests, with DNS, HAProxy and the mirror.

``Lab.up()`` boots the three guests in parallel on one vde LAN, gives each its
pool and protected datasets, starts the lab services on loopback and writes
the lab inventory. Everything it starts is recorded in ``lab.json`` in the run
directory as soon as it runs, so ``down()`` (from this process or another one,
e.g. ``recover lab down`` after ``recover lab up`` exited) stops exactly what
was started, by PID and only while the process is provably ours.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from recovery.config.load import load_inventory
from recovery.lab import keys
from recovery.lab.bind import LabDns
from recovery.lab.bmc import LabBmc
from recovery.lab.daemon import LabDaemon
from recovery.lab.fleet_setup import (
    FLEET,
    STAGING,
    WEB_HOSTS,
    FleetHost,
    FleetKeys,
    checked,
    fleet_host,
    provision,
    set_logins,
    www_sync_command,
)
from recovery.lab.haproxy import MIRROR_SERVER, LabHaproxy
from recovery.lab.image import ImagePaths, default_cache_dir
from recovery.lab.rootpool import build_lab_image
from recovery.lab.lab_inventory import GuestFacts, OobFacts, ServiceFacts, inventory_text
from recovery.lab.mirror import NOTICE_FILE, Mirror
from recovery.lab.ports import LOOPBACK
from recovery.lab.recorded import RecordedProcess
from recovery.lab.vm import Guest, LanSwitch

RUN_DIR_ENV = "RECOVERY_LAB_RUN"
RECORD_FORMAT = 1
GUEST_MEMORY_MB = 1024
#: Two vCPUs each (multi-threaded TCG): the host being recovered does its ZFS work while the
#: others idle, so it gets both of this machine's cores. Measured on awstats-2005: RTO 166 s with
#: two, 207 s with one; lab up 131 s against 123 s, when all three boot at once.
GUEST_CPUS = 2
BOOT_TIMEOUT = 400.0
#: DNS records are data the lab never connects to: loopback placeholders, so
#: even a mistaken client cannot send a packet off this machine.
DNS_ADDRESSES = {"eu-web": "127.0.0.11", "us-web": "127.0.0.12"}
MIRROR_DNS_ADDRESS = "127.0.0.4"
SERVICES = ("mirror", "dns", "haproxy", "bmc")

Progress = Callable[[str], None]
T = TypeVar("T")


def default_run_dir() -> Path:
    """``$RECOVERY_LAB_RUN`` or ``run/`` in the lab cache: disks and sockets of the running lab."""
    env = os.environ.get(RUN_DIR_ENV)
    return Path(env) if env else default_cache_dir() / "run"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Component:
    """One thing the lab runs, as ``status()`` found it."""

    name: str
    kind: str
    running: bool
    detail: str


@dataclass(frozen=True)
class LabStatus:
    run_dir: Path
    components: tuple[Component, ...]

    @property
    def running(self) -> bool:
        return bool(self.components) and all(c.running for c in self.components)

    @property
    def partly_running(self) -> bool:
        return any(c.running for c in self.components)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "running": self.running,
            "components": [asdict(c) for c in self.components],
        }


class LabError(Exception):
    """The lab is not in a state the request needs (e.g. not running)."""


class Lab:
    """The lab fleet in ``run_dir``; the Python API behind ``recover lab``."""

    def __init__(self, run_dir: Path | None = None, cache_dir: Path | None = None, progress: Progress = _say):
        self.run_dir = (run_dir or default_run_dir()).absolute()
        self.cache_dir = cache_dir
        self.progress = progress
        self.record_file = self.run_dir / "lab.json"
        self.inventory_file = self.run_dir / "inventory.toml"
        self.known_hosts_file = self.run_dir / "known_hosts"
        self.tsig_secret_file = self.run_dir / "tsig.secret"
        self.mirror_site = self.run_dir / "mirror-site"
        self.ground_truth_dir = self.run_dir / "ground-truth"
        self.history_file = self.run_dir / "history.json"
        self.keys_dir = self.run_dir / "keys"
        self._guests: dict[str, Guest] = {}
        self._daemons: dict[str, LabDaemon] = {}

    # -- public API --------------------------------------------------------

    def up(self) -> LabStatus:
        """Start the whole lab, or only report if it already runs; a failed start stops what it began."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            status = self.status()
            if status.running:
                self.progress(f"lab already running in {self.run_dir}")
                return status
            if status.partly_running:
                self.progress("stopping what is left of an earlier lab first")
                self._stop_recorded()
            try:
                self._start()
            except BaseException:
                self.progress("lab start failed: stopping what was started")
                self._stop_recorded()
                raise
        return self.status()

    def down(self, wipe: bool = False) -> None:
        """Stop everything lab.json records; ``wipe`` also deletes the guests' disks and lab files."""
        if not self.run_dir.is_dir():
            return
        with self._locked():
            self._stop_recorded()
            if wipe:
                self._wipe()

    def status(self) -> LabStatus:
        """What lab.json records and whether each piece is running (and provably ours)."""
        record = self.record()
        if not record:
            return LabStatus(self.run_dir, ())
        components = [Component("lan", "switch", LanSwitch(self.run_dir).running(), str(self.run_dir / "lan"))]
        for name, state in record.get("guests", {}).items():
            detail = f"ssh {LOOPBACK}:{state['ssh_port']} http {LOOPBACK}:{state['http_port']} lan {state['lan_ip']}"
            components.append(Component(name, "guest", self.guest(name).running(), detail))
        for name, service in record.get("services", {}).items():
            alive = RecordedProcess(service["pid"], service["workdir"]).alive()
            where = service.get("url") or f"{service.get('host')}:{service.get('port')}"
            components.append(Component(name, "service", alive, f"pid {service['pid']} {where}"))
        return LabStatus(self.run_dir, tuple(components))

    def record(self) -> dict[str, Any]:
        """The contents of lab.json, or ``{}`` if the lab was never started here."""
        try:
            return json.loads(self.record_file.read_text())
        except FileNotFoundError:
            return {}

    def guest(self, name: str) -> Guest:
        """The running guest ``name``, also from a process that did not start it."""
        if name not in self._guests:
            state = self.record().get("guests", {}).get(name)
            if state is None:
                raise LabError(f"lab guest {name!r} is not recorded in {self.record_file}; run `recover lab up`")
            guest = self._new_guest(_image_from(self.record()), fleet_host(name))
            current = json.loads(guest.state_file.read_text())  # the guest's own record: a reboot may move ports
            guest.ssh_port, guest.http_port, guest.accel = current["ssh_port"], current["http_port"], current["accel"]
            self._guests[name] = guest
        return self._guests[name]

    def ssh_command(self, name: str, command: tuple[str, ...] = ()) -> list[str]:
        """The system ``ssh`` command line for root on guest ``name``: pinned key, operator key, no user config."""
        record = self.require_running()
        state = record["guests"][name]
        return [
            "ssh", "-F", "/dev/null", "-i", record["operator_key"], "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={record['known_hosts']}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-p", str(state["ssh_port"]), f"root@{LOOPBACK}",
            *command,
        ]  # fmt: skip

    def root_password_file(self, name: str) -> Path:
        """Each host's own console password: one typed into a compromised host exposes no other."""
        return keys.ensure_password(self.run_dir / f"root-password-{name}")

    def fleet_keys(self) -> FleetKeys:
        return FleetKeys.ensure(self.keys_dir)

    def reach(self) -> AbstractContextManager[None]:
        """Where the guests answer: this machine's loopback (forwarded ports), so nothing to enter."""
        return nullcontext()

    def require_running(self) -> dict[str, Any]:
        status = self.status()
        if not status.running:
            raise LabError(f"the lab in {self.run_dir} is not running; run `recover lab up`")
        return self.record()

    # -- start -------------------------------------------------------------

    def _start(self) -> None:
        started = time.monotonic()
        timings: dict[str, Any] = {}
        image = build_lab_image(self.cache_dir, self.progress)
        timings["image_s"] = round(time.monotonic() - started, 1)
        record: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "started_at": _now(),
            "image": {k: str(v) for k, v in asdict(image).items()},
            "guests": {},
            "services": {},
        }
        lan = LanSwitch(self.run_dir)
        lan.start()
        record["lan"] = {"dir": str(lan.dir), "pidfile": str(lan.pidfile)}
        self._save(record)
        timings["boot_s"] = self._boot(image, record)
        phase = time.monotonic()
        self._provision()
        timings["provision_s"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        self._start_services(record)
        timings["services_s"] = round(time.monotonic() - phase, 1)
        timings["total_s"] = round(time.monotonic() - started, 1)
        record["timings"] = timings
        record["inventory"] = str(self.inventory_file)
        record["known_hosts"] = str(self.known_hosts_file)
        record["operator_key"] = str(image.operator_key)
        self._write_inventory(record)
        self._save(record)
        self.progress(f"lab up in {timings['total_s']} s; inventory: {self.inventory_file}")

    def _new_guest(self, image: ImagePaths, host: FleetHost) -> Guest:
        return Guest(
            image, self.run_dir, host.name, lan=LanSwitch(self.run_dir), lan_address=host.lan,
            memory_mb=GUEST_MEMORY_MB, cpus=GUEST_CPUS,
        )  # fmt: skip

    def _boot(self, image: ImagePaths, record: dict[str, Any]) -> dict[str, float]:
        """Start all guests at once (recorded at once), then wait for each one's SSH."""
        for host in FLEET:
            guest = self._new_guest(image, host)
            self._guests[host.name] = guest
            guest.start()
            record["guests"][host.name] = self._guest_record(guest)
            self._save(record)
        self.progress(f"booting {', '.join(h.name for h in FLEET)} in parallel…")
        waited = self._each(lambda host: round(self._guests[host.name].wait_for_ssh(BOOT_TIMEOUT), 1))
        self.progress("SSH answers on every guest: " + ", ".join(f"{n} {s} s" for n, s in waited.items()))
        return waited

    def _guest_record(self, guest: Guest) -> dict[str, Any]:
        state = json.loads(guest.state_file.read_text())
        state["dir"] = str(guest.dir)
        state["pidfile"] = str(guest.pidfile)
        state["serial_socket"] = str(guest.serial_socket)
        state["qmp_socket"] = str(guest.qmp_socket)
        return state

    def _provision(self) -> None:
        self.progress("pools, datasets, accounts and jobs on every guest…")
        fleet_keys = self.fleet_keys()
        host_keys = {name: guest.host_key for name, guest in self._guests.items()}
        self._each(lambda host: provision(self._guests[host.name], host, fleet_keys, host_keys))
        self._each(lambda host: set_logins(self._guests[host.name], self.root_password_file(host.name)))
        people = self._guests[STAGING.name]
        checked(people, people.run(www_sync_command(), timeout=300), "first www-sync over the LAN")

    def _start_services(self, record: dict[str, Any]) -> None:
        self.progress("DNS, HAProxy and the mirror on 127.0.0.1…")
        copy_site(self._guests[STAGING.name], self.mirror_site)
        mirror = self._start_daemon(record, "mirror", Mirror(self.mirror_site))
        record["services"]["mirror"].update(url=mirror.url, notice_file=str(mirror.workdir / NOTICE_FILE))
        dns = self._start_daemon(record, "dns", LabDns(DNS_ADDRESSES.values()))
        keys.write_private(self.tsig_secret_file, dns.secret.encode() + b"\n")
        record["services"]["dns"].update(
            host=dns.host, port=dns.port, zone=dns.zone, record=dns.record, key_name=dns.key_name,
            algorithm=dns.algorithm, secret_file=str(self.tsig_secret_file), addresses=list(dns.web_addresses),
        )  # fmt: skip
        servers = {h.name: f"{LOOPBACK}:{self._guests[h.name].http_port}" for h in WEB_HOSTS}
        haproxy = self._start_daemon(record, "haproxy", LabHaproxy(servers, mirror=f"{LOOPBACK}:{mirror.port}"))
        record["services"]["haproxy"].update(
            url=haproxy.url, socket=haproxy.socket.path, backend=haproxy.backend, servers=servers,
            mirror_server=MIRROR_SERVER,
        )  # fmt: skip
        self._start_bmc(record)
        self._save(record)

    def _start_bmc(self, record: dict[str, Any]) -> None:
        """The lab BMC (sshd with a command-restricted key) in front of every guest."""
        key = self.keys_dir / "bmc_ed25519"
        public = keys.ensure_ed25519(key, "recovery-bmc")
        bmc = self._start_daemon(record, "bmc", LabBmc(self.run_dir / "bmc", public))
        for guest in self._guests.values():
            bmc.add(guest)
        record["services"]["bmc"].update(port=bmc.port, host_key=bmc.host_key, user=bmc.user, key=str(key))

    def _start_daemon(self, record: dict[str, Any], name: str, daemon: Any) -> Any:
        daemon.start()
        self._daemons[name] = daemon
        record["services"][name] = {"pid": daemon.pid, "workdir": str(daemon.workdir)}
        self._save(record)
        return daemon

    def _write_inventory(self, record: dict[str, Any]) -> None:
        guests = {
            name: GuestFacts(state["ssh_port"], state["http_port"], state["host_key"], DNS_ADDRESSES.get(name))
            for name, state in record["guests"].items()
        }
        dns, haproxy = record["services"]["dns"], record["services"]["haproxy"]
        services = ServiceFacts(
            dns_port=dns["port"], zone=dns["zone"], record=dns["record"], tsig_name=dns["key_name"],
            tsig_algorithm=dns["algorithm"], tsig_secret_file=dns["secret_file"],
            mirror_address=MIRROR_DNS_ADDRESS, haproxy_socket=haproxy["socket"],
            haproxy_backend=haproxy["backend"], mirror_server=haproxy["mirror_server"],
            notice_file=record["services"]["mirror"]["notice_file"],
        )  # fmt: skip
        image = record["image"]
        bmc = record["services"]["bmc"]
        oob = OobFacts(bmc["port"], bmc["user"], bmc["key"], bmc["host_key"])
        passwords = {name: str(self.root_password_file(name)) for name in guests}
        text = inventory_text(guests, services, image["operator_key"], passwords, oob)
        _write_atomic(self.inventory_file, text)
        load_inventory(self.inventory_file)
        known = "".join(
            f"[{LOOPBACK}]:{facts.ssh_port} {' '.join(facts.host_key.split()[:2])}\n" for facts in guests.values()
        )
        _write_atomic(self.known_hosts_file, known)

    # -- stop --------------------------------------------------------------

    def _stop_recorded(self) -> None:
        """Stop services, guests and the LAN that lab.json records; each only if provably ours."""
        record = self.record()
        for name in reversed(SERVICES):
            service = record.get("services", {}).get(name)
            daemon = self._daemons.pop(name, None)
            if daemon is not None:
                daemon.stop()
            elif service:
                RecordedProcess(service["pid"], service["workdir"]).stop()
                _remove_workdir(Path(service["workdir"]))
        for name in record.get("guests", {}):
            self.guest(name).stop()
        self._guests.clear()
        LanSwitch(self.run_dir).stop()
        if record:
            record["stopped_at"] = _now()
            self._save(record)

    def _wipe(self) -> None:
        """Delete only what ``up`` creates here, never the run directory's other contents."""
        for host in FLEET:
            shutil.rmtree(self.run_dir / host.name, ignore_errors=True)
        # The golden store a rehearsal keeps here describes these guests' snapshots: it goes with them.
        for directory in (self.mirror_site, self.ground_truth_dir, self.keys_dir, self.run_dir / "lan",
                          self.run_dir / "golden-store"):
            shutil.rmtree(directory, ignore_errors=True)
        for path in (self.record_file, self.inventory_file, self.known_hosts_file, self.tsig_secret_file,
                     self.history_file, self.run_dir / "lan.pid"):  # fmt: skip
            path.unlink(missing_ok=True)

    # -- helpers -----------------------------------------------------------

    def _each(self, work: Callable[[FleetHost], T]) -> dict[str, T]:
        """``work`` on every fleet host at once; the first failure is raised after all finished."""
        with ThreadPoolExecutor(len(FLEET)) as pool:
            futures = {host.name: pool.submit(work, host) for host in FLEET}
        return {name: future.result() for name, future in futures.items()}

    def _save(self, record: dict[str, Any]) -> None:
        _write_atomic(self.record_file, json.dumps(record, indent=2) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time per run directory."""
        with open(self.run_dir / "lab.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def copy_site(people: Any, site: Path) -> None:
    """The mirror's static copy of the site: the staging host's web root, as deployed."""
    archive = checked(people, people.run("tar -C /srv/www/htdocs -cf - ."), "packing the site").stdout
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(site, filter="data")


def _image_from(record: dict[str, Any]) -> ImagePaths:
    fields = record["image"]
    try:
        return ImagePaths(**{k: (v if k == "key" else Path(v)) for k, v in fields.items()})
    except TypeError:
        raise LabError("this lab was brought up by an older version of the lab image (no root pool or rescue "
                       "image in its record): `recover lab down --wipe`, then `recover lab up`") from None


def _remove_workdir(path: Path) -> None:
    """A lab service's private temp dir, recognised by the prefix LabDaemon gives it."""
    if path.name.startswith("recovery-lab-") and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(text)
    staged.replace(path)
