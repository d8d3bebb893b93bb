"""libvirtd and virtlogd run by the lab itself, in an isolated network namespace with private state.

No init system is assumed, and the host's own libvirt (its networks, its
autostarted ``default`` NAT network, its domains) is never touched: both
daemons run in a mount namespace where /etc/libvirt, /run, /var/lib/libvirt,
/var/log/libvirt and /var/cache/libvirt are bind mounts of one temporary
directory this object made, inside a network namespace with an unreachable
default route (recovery.lab.netns). The configuration copied there has no
network defined at all, so nothing but what the lab asks for exists.

Clients (virsh, vagrant-libvirt) reach the daemon through its socket path,
``qemu:///system?socket=...``. Stopping destroys every domain and network of
this private daemon (all of them are the lab's), stops the daemons by the PIDs
``Popen`` gave, kills whatever still runs in the namespace (QEMU, dnsmasq:
nothing else can be in it) and deletes the namespace and the directory.

The state directory holds ``host.json``: the namespace, the daemons' PIDs and
the process that owns them. A run killed before its finalizer (SIGKILL, a
lost CI runner) leaves them running; the next ``stop_abandoned()`` finds the
record, sees its owner gone, and stops exactly what it names. A daemon is
signalled only while its command line names that state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from recovery.hostile import for_terminal
from recovery.lab.daemon import LabDaemon, LabError
from recovery.lab.netns import IsolatedNetns
from recovery.lab.recorded import RecordedProcess

HOST_CONFIG = Path("/etc/libvirt")
#: Where each private directory is bound inside the daemons' mount namespace.
BINDS = {
    "etc": "/etc/libvirt",
    "run": "/run",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
STORAGE_POOL = "recovery-lab"
LIBVIRTD_CONF = """\
# The lab's private libvirtd: local unix socket only, root only.
listen_tls = 0
listen_tcp = 0
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
"""
#: QEMU as root with no confinement or cgroups: a lab daemon in a container has
#: no AppArmor profile, no delegated cgroup tree and no room for per-domain /dev.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""
BIND_SCRIPT = """\
set -eu
state=$1
shift
for pair in {binds}; do
    mount --bind "$state/${{pair%%=*}}" "${{pair#*=}}"
done
exec "$@"
""".format(binds=" ".join(f"{name}={target}" for name, target in BINDS.items()))
KILL_GRACE = 5.0
STATE_PREFIX = "recovery-lab-libvirt-"
RECORD = "host.json"


class _PrivateDaemon(LabDaemon):
    """One libvirt daemon, exec'd in the namespace after the bind mounts: Popen's PID is the daemon's."""

    ready_timeout = 30.0
    program = ""
    socket_name = ""

    def __init__(self, netns: IsolatedNetns, state: Path) -> None:
        super().__init__()
        self.netns = netns
        self.state = state

    def _prepare(self, workdir: Path) -> Sequence[str]:
        # --config names the state directory: the proof a later run checks before it signals us
        config = self.state / "etc" / f"{self.program}.conf"
        daemon = [self.program, "--config", str(config), "--pid-file", f"/run/{self.program}.pid"]
        return self.netns.argv(["sh", "-c", BIND_SCRIPT, "sh", str(self.state), *daemon])

    def _ready(self) -> bool:
        return (self.state / "run/libvirt" / self.socket_name).exists()


class _Virtlogd(_PrivateDaemon):
    name = "virtlogd"
    program = "virtlogd"
    socket_name = "virtlogd-sock"


class _Libvirtd(_PrivateDaemon):
    name = "libvirtd"
    program = "libvirtd"
    socket_name = "libvirt-sock"


class LibvirtHost:
    """The lab's own libvirtd (with virtlogd) in its own network namespace; a context manager."""

    def __init__(self) -> None:
        self.netns = IsolatedNetns()
        self.state: Path | None = None
        self._daemons: list[_PrivateDaemon] = []
        #: PIDs read back from an abandoned host's record (no Popen to wait on).
        self._recorded: dict[str, int] = {}

    @property
    def socket(self) -> Path:
        assert self.state is not None, "libvirt host not started"
        return self.state / "run/libvirt/libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def pool_dir(self) -> Path:
        assert self.state is not None, "libvirt host not started"
        return self.state / "pool"

    def start(self) -> LibvirtHost:
        """Namespace, private config, virtlogd, libvirtd and the storage pool; undone on failure."""
        try:
            self.netns.create()
            self.state = Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
            write_private_config(self.state)
            self._save_record()
            for daemon in (_Virtlogd(self.netns, self.state), _Libvirtd(self.netns, self.state)):
                self._daemons.append(daemon)
                daemon.start()
                self._save_record()
            self._define_pool()
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> dict[str, int]:
        """The daemons' PIDs, for the record and for the report."""
        return {d.name: d.pid for d in self._daemons if d.pid is not None}

    def virsh(self, *args: str, check: bool = True) -> str:
        """One virsh command against this daemon only (never the host's qemu:///system)."""
        done = subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True)
        if check and done.returncode:
            raise LabError(f"virsh {' '.join(args)} failed: {for_terminal(done.stderr)}")
        return done.stdout

    def stop(self) -> None:
        """Destroy what the daemon runs, stop both daemons by PID, empty and delete the namespace."""
        if (self._daemons or self._recorded) and self.socket.exists():
            self._destroy_domains_and_networks()
        for daemon in reversed(self._daemons):
            daemon.stop()
        self._daemons = []
        assert self.state is not None or not self._recorded
        for pid in reversed(list(self._recorded.values())):
            RecordedProcess(pid, str(self.state)).stop(KILL_GRACE)
        self._recorded = {}
        self._kill_leftovers()
        self.netns.delete()
        if self.state:
            shutil.rmtree(self.state, ignore_errors=True)
            self.state = None

    @classmethod
    def stop_abandoned(cls, temp_dir: Path | None = None) -> list[str]:
        """Stop lab libvirt hosts whose owning process is gone; the namespaces they were in.

        A host whose owner still runs (another test run, another worktree) is left alone.
        """
        stopped = []
        for state in sorted((temp_dir or Path(tempfile.gettempdir())).glob(f"{STATE_PREFIX}*")):
            host = cls._from_record(state)
            if host is not None:
                host.stop()
                stopped.append(host.netns.name)
        return stopped

    @classmethod
    def _from_record(cls, state: Path) -> LibvirtHost | None:
        try:
            record = json.loads((state / RECORD).read_text())
        except (OSError, ValueError):
            return None
        if _process_start(int(record["owner_pid"])) == record["owner_start"]:
            return None  # its owner still runs: not abandoned
        host = cls()
        host.netns = IsolatedNetns(record["netns"])
        host.netns.created = host.netns.path.exists()
        host.state = state
        host._recorded = {name: int(pid) for name, pid in record["daemons"].items()}
        return host

    def _save_record(self) -> None:
        assert self.state is not None
        record = {
            "owner_pid": os.getpid(),
            "owner_start": _process_start(os.getpid()),
            "netns": self.netns.name,
            "daemons": self.pids(),
        }
        tmp = self.state / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.state / RECORD)

    def __enter__(self) -> LibvirtHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _define_pool(self) -> None:
        self.pool_dir.mkdir()
        self.virsh("pool-define-as", STORAGE_POOL, "dir", "--target", str(self.pool_dir))
        self.virsh("pool-start", STORAGE_POOL)

    def _destroy_domains_and_networks(self) -> None:
        for domain in self.virsh("list", "--name", check=False).split():
            self.virsh("destroy", domain, check=False)
        for network in self.virsh("net-list", "--name", check=False).split():
            self.virsh("net-destroy", network, check=False)

    def _kill_leftovers(self) -> None:
        """Anything still in the namespace was started by these daemons: TERM, then KILL."""
        leftovers = self.netns.pids()
        for pid in leftovers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.1)
            leftovers = [pid for pid in leftovers if _alive(pid)]
        for pid in leftovers:
            _signal(pid, signal.SIGKILL)


def write_private_config(state: Path) -> None:
    """The host's libvirt config without any network, plus the lab's libvirtd.conf and qemu.conf."""
    for name in BINDS:
        (state / name).mkdir(parents=True, exist_ok=True)
    (state / "run/lock").mkdir(mode=0o1777)  # /var/lock: where libvirtd locks a console's pty for one client
    etc = state / "etc"
    shutil.copytree(HOST_CONFIG, etc, dirs_exist_ok=True, symlinks=True)
    networks = etc / "qemu/networks"
    shutil.rmtree(networks, ignore_errors=True)
    (networks / "autostart").mkdir(parents=True)
    (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (etc / "qemu.conf").write_text(QEMU_CONF)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): a PID plus
    its start time names one process, even after the number is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
