"""Fan-out: one playbook over N hosts at once vs the slowest host alone, and the commander's memory per host.

N real OpenSSH daemons on 127.0.0.1, each with its own host key (pinned in the
inventory) and its own authorized client key. A playbook of three `run` steps
(`true`, a small command, a `sleep` so the host's own work shows) with
`[order] serial = N` runs through the real engine (control.execute, journal,
report): first against single hosts alone (best of R runs each; the slowest host
counts), then against all N hosts in one batch (best of R). Each run is a process
of its own, so its peak RSS is its own and not a high-water mark left by the run
before.

Figures: wall(N hosts) / wall(slowest host alone), goal <= 1.2x; memory per host
= (peak RSS of the N-host run - peak RSS of the 1-host run) / (N - 1); peak
threads and open file descriptors; CPU of the commander and of the daemons (the
"hosts" share this machine's CPUs with the commander, unlike a real fleet);
where the N-host run's time went, from its journal; with --why, how long the
journal's lock was held and waited for, and each SSH connection.
Usage: python bench/fanout.py [--hosts N] [--singles K] [--repeat R] [--sleep SECONDS] [--why] [--with-rc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.project import write_inventory
from tests.support.sshd import Sshd, keygen, start_sshd

MAX_HOSTS = 200  # each host is a daemon here and a connection, a socket and a thread in the commander
RUN_TIMEOUT = 180.0  # seconds one measured run may take before it counts as hung
GOAL = 1.2
# Root's shell reads ~/.bashrc for every command sshd runs (bash does so when started by sshd at shell
# level 1); a developer's rc file (pyenv init, say) then costs each "host" 0.1 s of CPU or more per command,
# and here all hosts share the commander's CPUs. SHLVL=1 makes that bash level 2, which skips the rc file.
CLEAN_SHELL = ("SetEnv SHLVL=1",)


class QuietUI:
    def event(self, step: str, host: str, status: str, detail: str = "") -> None:
        pass

    def acknowledge(self, prompt: str) -> bool:
        return True


# -- one measured run, in a process of its own ----------------------------------------


class Sampler(threading.Thread):
    """Peaks of RSS, threads and open file descriptors of this process, sampled every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.threads = self.fds = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.01):
            self.sample()

    def sample(self) -> None:
        self.threads = max(self.threads, int(_status()["Threads"]))
        self.fds = max(self.fds, len(os.listdir("/proc/self/fd")))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def _status() -> dict[str, str]:
    lines = Path("/proc/self/status").read_text().splitlines()
    return {k: v.split()[0] for k, _, v in (line.partition(":\t") for line in lines) if v.split()}


class TimedLock:
    """A lock that notes how long each holder waited for it and held it (the journal's, under --why)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited: list[float] = []
        self.held: list[float] = []
        self._since = 0.0

    def __enter__(self) -> None:
        start = time.perf_counter()
        self._lock.acquire()
        self._since = time.perf_counter()
        self.waited.append(self._since - start)

    def __exit__(self, *exc: object) -> None:
        self.held.append(time.perf_counter() - self._since)
        self._lock.release()


def time_connects(connects: list[float]) -> None:
    """Note how long each SSH session's first ``open`` (connect, key exchange, login) took."""
    from recovery.transport.ssh import SshSession

    original, opened, lock = SshSession.open, set(), threading.Lock()

    def open_(session: SshSession) -> SshSession:
        with lock:
            first = id(session) not in opened
            opened.add(id(session))
        start = time.perf_counter()
        result = original(session)
        if first:
            connects.append(time.perf_counter() - start)
        return result

    SshSession.open = open_  # type: ignore[method-assign]


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {"n": len(values), "sum": sum(values), "median": statistics.median(ordered), "max": ordered[-1]}


def measure(base: Path, target: str, why: bool) -> dict[str, Any]:
    """Run the playbook against ``target`` (a host or the group of all hosts); figures as a dict."""
    import recovery.steps  # noqa: F401 - registers the step kinds
    from recovery.engine import control, runstore

    inventory_path, playbook_path = base / "inventory.toml", base / "playbook.toml"
    inventory, plan = control.prepare(inventory_path, playbook_path, target)
    run = runstore.create(base / "runs", "bench", inventory_path, playbook_path)
    journal_lock = TimedLock()
    connects: list[float] = []
    if why:
        run.journal._lock = journal_lock  # type: ignore[assignment]
        time_connects(connects)
    rss_before = int(_status()["VmRSS"])
    sampler = Sampler()
    sampler.start()
    cpu_before = _cpu_self()
    start = time.perf_counter()
    outcome = control.execute(run, plan, inventory, QuietUI(), "run_started")
    wall = time.perf_counter() - start
    cpu = _cpu_self() - cpu_before
    sampler.stop()
    status = _status()
    return {"target": target, "hosts": len(plan.target.hosts), "status": outcome.status, "done": outcome.done,
            "failed": outcome.failed, "wall": wall, "cpu": cpu, "rss_before_kb": rss_before,
            "hwm_kb": int(status["VmHWM"]), "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "threads": sampler.threads, "fds": sampler.fds, "timeline": timeline(run.journal.records()),
            "why": {"journal_held": spread(journal_lock.held), "journal_waited": spread(journal_lock.waited),
                    "connect": spread(connects)} if why else None}


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timeline(records: list[Any]) -> dict[str, float]:
    """Where the run's time went, from the journal's own timestamps (seconds from `run_started`)."""
    t0 = records[0].ts
    first: dict[str, float] = {}
    first_done: dict[str, float] = {}
    last_done: dict[str, float] = {}
    for rec in records:
        if rec.event == "step_started" and rec.host not in first:
            first[rec.host] = rec.ts - t0
        if rec.event == "step_succeeded":
            first_done.setdefault(rec.host, rec.ts - t0)
            last_done[rec.host] = rec.ts - t0
    finished = next((r.ts - t0 for r in records if r.event == "run_finished"), float("nan"))
    first_steps = [first_done[h] - first[h] for h in first_done]
    return {"records": len(records), "first_start_max": max(first.values(), default=0.0),
            "first_step_median": statistics.median(first_steps) if first_steps else 0.0,
            "first_step_max": max(first_steps, default=0.0),
            "host_done_min": min(last_done.values(), default=0.0),
            "host_done_max": max(last_done.values(), default=0.0), "run_finished": finished}


def measure_in_child(base: Path, target: str, fleet: list[Sshd], why: bool) -> dict[str, Any]:
    """One measured run in a fresh interpreter (it prints its figures as one JSON line), with the
    machine's load before it and the CPU the fleet's daemons spent serving it."""
    load = os.getloadavg()[0]
    fleet_before = fleet_cpu(fleet)
    proc = subprocess.run([sys.executable, __file__, "--measure", str(base), target, *(["--why"] if why else [])],
                          check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"measured run against {target} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if figures["status"] != "done":
        raise RuntimeError(f"run against {target} ended {figures['status']}: {figures}")
    time.sleep(0.3)  # each daemon reaps its connection's processes, and only then counts their CPU
    return {**figures, "load": load, "fleet_cpu": fleet_cpu(fleet) - fleet_before}


def fleet_cpu(fleet: list[Sshd]) -> float:
    """CPU seconds the daemons and their reaped children (connections, shells, commands) used so far."""
    ticks = 0
    for daemon in fleet:
        fields = Path(f"/proc/{daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the fleet ------------------------------------------------------------------------


def start_fleet(base: Path, count: int, started: list[Sshd], config: tuple[str, ...]) -> None:
    """``count`` daemons, each with its own host key and its own client key; appended to ``started`` as they run."""
    lock = threading.Lock()

    def one(index: int) -> None:
        name = f"web{index:03d}"
        key = base / f"client-{name}"
        keygen(key)
        daemon = start_sshd(name, base, key, config)
        with lock:
            started.append(daemon)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(one, i) for i in range(count)]:
            future.result()
    started.sort(key=lambda d: d.name)


def stop_fleet(base: Path, started: list[Sshd]) -> None:
    """Stop every daemon by its PID, and any child of ours serving from ``base`` that a failed start left."""
    for daemon in started:
        daemon.stop()
    for pid in _children_under(base):
        os.kill(pid, signal.SIGTERM)


def _children_under(base: Path) -> list[int]:
    """PIDs of this process's children whose command line names a path under ``base``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and str(base) in cmdline:
            found.append(int(entry.name))
    return found


def write_playbook(path: Path, serial: int, sleep: float) -> Path:
    commands = ["true", "uname -sr && id -u", f"sleep {sleep}"]
    steps = "".join(f'[[steps]]\nkind = "run"\nname = "step-{i}"\nparams = {{ command = "{c}" }}\n'
                    for i, c in enumerate(commands))
    path.write_text(f"[order]\nserial = {serial}\n{steps}")
    return path


# -- the benchmark --------------------------------------------------------------------


def check_limits(hosts: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = hosts * 4 + 64  # per host: the socket, the pipe paramiko makes for a channel's select, a margin
    print(f"ulimit -n                      {soft} (hard {hard}); about {need} needed")
    if soft < need:
        raise SystemExit(f"ulimit -n is {soft}, below the {need} that {hosts} hosts need: raise it or use fewer")


def bench(hosts: int, singles: int, repeat: int, sleep: float, config: tuple[str, ...], why: bool) -> None:
    check_limits(hosts)
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        base = Path(tmp)
        started: list[Sshd] = []
        try:
            start = time.perf_counter()
            start_fleet(base, hosts, started, config)
            print(f"sshd daemons started           {len(started)} in {time.perf_counter() - start:.1f} s "
                  f"(each its own host key, pinned, and its own client key)")
            write_inventory(base / "inventory.toml", started)
            write_playbook(base / "playbook.toml", hosts, sleep)
            report(hosts, *runs(base, started, singles, repeat, why))
        finally:
            stop_fleet(base, started)


def runs(base: Path, fleet: list[Sshd], singles: int, repeat: int,
         why: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A discarded warm-up, single hosts spread over the fleet, then every host at once.

    Each is the best of ``repeat`` runs, so that a moment when something else on the
    machine took the CPUs does not pass for a slow host (or a slow fan-out).
    """
    measure_in_child(base, fleet[0].name, fleet, why)
    picks = [fleet[round(i * (len(fleet) - 1) / max(singles - 1, 1))].name for i in range(singles)]
    alone = [best(base, name, fleet, repeat, why) for name in dict.fromkeys(picks)]
    return alone, best(base, "web", fleet, repeat, why)


def best(base: Path, target: str, fleet: list[Sshd], repeat: int, why: bool) -> dict[str, Any]:
    tries = [measure_in_child(base, target, fleet, why) for _ in range(repeat)]
    return {**min(tries, key=lambda f: f["wall"]), "walls": [f["wall"] for f in tries]}


ROWS = [  # label, key, format; *_kb figures are printed in MiB
    ("wall time of the run (s)", "wall", "{:.3f}"), ("load average before", "load", "{:.1f}"),
    ("commander CPU (s)", "cpu", "{:.2f}"), ("daemons' CPU (s)", "fleet_cpu", "{:.2f}"),
    ("RSS before the run (MiB)", "rss_before_kb", "{:.1f}"), ("peak RSS, VmHWM (MiB)", "hwm_kb", "{:.1f}"),
    ("ru_maxrss (MiB)", "maxrss_kb", "{:.1f}"), ("peak threads", "threads", "{}"), ("peak open fds", "fds", "{}"),
]
TIMELINE = [  # seconds from `run_started`, from the journal
    ("journal records", "records", "{}"), ("last host's first step began", "first_start_max", "{:.3f}"),
    ("connect + 1st step, median", "first_step_median", "{:.3f}"),
    ("connect + 1st step, max", "first_step_max", "{:.3f}"), ("first host done", "host_done_min", "{:.3f}"),
    ("last host done", "host_done_max", "{:.3f}"), ("run_finished journaled", "run_finished", "{:.3f}"),
]


def report(hosts: int, alone: list[dict[str, Any]], fleet: dict[str, Any]) -> None:
    slowest = max(alone, key=lambda f: f["wall"])
    ratio = fleet["wall"] / slowest["wall"]
    per_host = (fleet["hwm_kb"] - slowest["hwm_kb"]) / (hosts - 1)
    for figures in [*alone, fleet]:
        walls = ", ".join(f"{w:.3f}" for w in figures["walls"])
        print(f"{figures['target']:<8} ({figures['hosts']:>3} hosts) wall s    {walls}  (best counts)")
    print(f"\n{'':31}{'1 host (slowest)':>18}{f'{hosts} hosts':>14}")
    for label, key, fmt in ROWS:
        one, many = (slowest[key] / 1024, fleet[key] / 1024) if key.endswith("_kb") else (slowest[key], fleet[key])
        print(f"{label:<31}{fmt.format(one):>18}{fmt.format(many):>14}")
    print("journal timeline (s from run_started)")
    for label, key, fmt in TIMELINE:
        print(f"  {label:<29}{fmt.format(slowest['timeline'][key]):>18}{fmt.format(fleet['timeline'][key]):>14}")
    if fleet["why"]:
        print_why(slowest["why"], fleet["why"])
    print(f"\nfan-out ratio                  {ratio:.2f}x  (goal <= {GOAL}x) {'OK' if ratio <= GOAL else 'MISSED'}")
    print(f"commander memory per host      {per_host:.0f} KiB  ((peak N - peak 1) / (N - 1))")
    print(f"CPU per host, N-host run       commander {fleet['cpu'] / hosts * 1000:.1f} ms, "
          f"daemons {fleet['fleet_cpu'] / hosts * 1000:.1f} ms; {os.cpu_count()} CPUs shared by both")


def print_why(one: dict[str, dict[str, float]], many: dict[str, dict[str, float]]) -> None:
    print("where it waited (--why)")
    for label, key in [("journal lock held", "journal_held"), ("journal lock waited for", "journal_waited"),
                       ("SSH connect + login", "connect")]:
        for stat, fmt in [("sum", "{:.3f} s"), ("median", "{:.1f} ms"), ("max", "{:.1f} ms")]:
            scale = 1 if stat == "sum" else 1000
            print(f"  {label + ', ' + stat:<29}{fmt.format(one[key][stat] * scale):>18}"
                  f"{fmt.format(many[key][stat] * scale):>14}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure(Path(argv[1]), argv[2], "--why" in argv)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--singles", type=int, default=3, help="single hosts measured alone; the slowest counts")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best counts")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds the last step sleeps on each host")
    parser.add_argument("--why", action="store_true",
                        help="also time the journal's lock and each SSH connection in the measured runs")
    parser.add_argument("--with-rc", action="store_true",
                        help="let root's shell read its ~/.bashrc for every command, as sshd makes it")
    args = parser.parse_args(argv)
    if not 2 <= args.hosts <= MAX_HOSTS or not 1 <= args.singles <= 10 or not 1 <= args.repeat <= 3:
        parser.error(f"--hosts must be 2..{MAX_HOSTS}, --singles 1..10, --repeat 1..3")
    if not 0 <= args.sleep <= 30:
        parser.error("--sleep must be 0..30 seconds")
    bench(args.hosts, args.singles, args.repeat, args.sleep, () if args.with_rc else CLEAN_SHELL, args.why)


if __name__ == "__main__":
    main(sys.argv[1:])
