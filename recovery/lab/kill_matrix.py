"""The kill matrix: `kill -9` the real `recover` at points across the whole flow, resume after each.

One lab session carries it (a chain: each resume runs until the next point,
where it is killed again), so it costs one recovery plus the repeated work
of the steps that were in flight. The killed run is `recover web`: the
rsync-2009 attack puts the same files on eu-web and us-web, and with
``serial = 1`` eu-web goes through all its steps before us-web starts. Every
point after containment falls on eu-web's steps (or on `return`, after both),
so the same run recovers us-web uninterrupted: the reference. The two must end
in the same dataset layout, origins, holds, evidence and traffic, with run ids
and host names aside, and both must be back in rotation.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recovery.config.load import load_inventory
from recovery.engine import control, runstore, state
from recovery.lab import attacks, history
from recovery.lab.fleet import Lab
from recovery.rehearsal import PLAYBOOKS, DnsWatch
from recovery.traffic.haproxy import HaproxySocket, parse_servers_state, runtime_command
from recovery.transport.result import TransportError


@dataclass(frozen=True)
class KillPoint:
    """Kill once ``event`` (for ``step``) is in the journal, ``delay`` seconds later."""

    label: str
    event: str
    step: str | None
    delay: float


#: In the order the flow reaches them.
POINTS = (
    KillPoint("divert: routing journaled, not yet changed", "step_progress", "divert", 0.0),
    KillPoint("contain: power-off requested", "step_started", "contain", 0.3),
    KillPoint("rescue boot, before the console login", "step_started", "boot_single", 6.0),
    KillPoint("preserve: snapshots being taken", "step_started", "preserve", 0.5),
    KillPoint("find_clean: bisecting", "step_started", "find_clean", 4.0),
    KillPoint("restore: in the middle of the swap", "step_started", "restore", 3.0),
    KillPoint("boot_normal: waiting for SSH", "step_started", "boot_normal", 8.0),
    KillPoint("return: putting traffic back", "step_started", "return", 0.1),
    KillPoint("evidence copy over SSH", "step_started", "evidence-copy", 1.0),
)
#: The points CI kills at (the bench kills at all of them): a host half booted into the rescue
#: system, a swap half done, traffic half returned.
CI_POINTS = tuple(p for p in POINTS if p.step in ("boot_single", "restore", "return"))
#: The host every point after containment falls on, and its twin the same run recovers uninterrupted.
KILLED, REFERENCE = "eu-web", "us-web"


@dataclass
class Attempt:
    point: KillPoint
    killed: bool  # the process was still running at the point and was killed there
    exit_code: int | None  # of a process that ended before its point
    seconds: float


@dataclass
class Matrix:
    attempts: list[Attempt] = field(default_factory=list)
    final_exit: int | None = None
    killed_run: runstore.Run | None = None
    killed_state: dict[str, object] = field(default_factory=dict)
    reference_state: dict[str, object] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(a.killed for a in self.attempts)

    @property
    def same_end(self) -> bool:
        return self.final_exit == 0 and not self.differences


def prepare(lab: Lab, env: dict[str, str], say: Callable[[str], None]) -> Path:
    """A fresh lab with golden images of both web hosts, a history, and the 2009 attack on both;
    the attack's ground truth file."""
    lab.down(wipe=True)
    lab.up()
    _recover(["golden", "web"], lab, env, PLAYBOOKS / "golden.toml", check=True)
    history.make_history(lab)
    truth = attacks.rsync_2009(lab)
    say("lab ready: golden, history, rsync-2009 on eu-web and us-web")
    return truth


def run(lab: Lab, env: dict[str, str], say: Callable[[str], None], points: tuple[KillPoint, ...] = POINTS) -> Matrix:
    """Kill `recover web` at every point and resume to the end; compare eu-web's end with us-web's."""
    matrix = Matrix()
    runs = Path(env["RECOVERY_RUNS"])
    process, after = _start(["web"], lab, env), 0
    for point in points:
        started = time.monotonic()
        killed = _kill_at(process, runs, point, after)
        matrix.attempts.append(Attempt(point, killed, None if killed else process.returncode,
                                       round(time.monotonic() - started, 1)))
        say(f"kill point '{point.label}': {'killed' if killed else f'not reached (exit {process.returncode})'}")
        if not killed:
            break
        after = _last_seq(runs / _newest_run(runs).id / "journal.sqlite")  # records of earlier processes
        process = _start(["resume", _newest_run(runs).id], lab, env)
    matrix.final_exit = process.wait()
    matrix.killed_run = _newest_run(runs)
    matrix.killed_state = end_state(lab, KILLED, matrix.killed_run)
    matrix.reference_state = end_state(lab, REFERENCE, matrix.killed_run)
    matrix.differences += [f"{key}: killed run {matrix.killed_state.get(key)!r} vs uninterrupted "
                           f"{matrix.reference_state.get(key)!r}"
                           for key in sorted(set(matrix.killed_state) | set(matrix.reference_state))
                           if matrix.killed_state.get(key) != matrix.reference_state.get(key)]
    return matrix


def end_state(lab: Lab, host: str, run: runstore.Run) -> dict[str, object]:
    """The host's ZFS state, the traffic as `return` journaled it, and the journal, after ``run``."""
    try:
        found = host_state(lab, host, run.id)
    except TransportError as exc:  # e.g. left in single-user mode by a run that did not finish
        found = {"reachable over SSH": str(exc)}
    now = traffic(lab)
    returns = {p.id for p in control.reopen(run)[1].steps if p.step.kind == "return"}
    returned = [r for r in run.journal.records() if r.event == "step_succeeded" and r.step in returns]
    routes = returned[-1].data["outputs"]["channels"] if returned else {}
    address = load_inventory(lab.inventory_file).hosts[host].public_address
    found["traffic as return journaled it"] = bool(routes) and now == {
        "dns": sorted(d for d, _ in routes["www/dns"]["after"]["routes"]),
        "haproxy": sorted((d, c) for d, c in routes["www/haproxy"]["after"]["routes"])}
    found["the recovered host back in rotation"] = address in now["dns"] and (host, "ready") in now["haproxy"]
    found["journal intact"] = run.journal.verify() == []
    found["steps done once"] = _each_done_once(run)
    return found


def host_state(lab: Lab, host: str, run_id: str) -> dict[str, object]:
    """What a recovery leaves on a host, with the run id written as RUN (so two runs compare)."""
    guest = lab.guest(host)

    def listed(command: str) -> list[str]:
        out = guest.run(command, timeout=60).stdout.decode(errors="replace")
        return sorted(line.replace(run_id, "RUN") for line in out.splitlines() if line.strip())

    datasets = listed("zfs list -H -t filesystem -o name,origin,readonly,canmount,mounted -r tank rpool")
    snapshots = listed("zfs list -H -t snapshot -o name -r tank rpool")
    holds = listed("zfs list -H -t snapshot -o name -r tank rpool | xargs -r zfs holds -H")
    incident = Counter(s.split("@")[0].split(".quarantine-")[0] for s in snapshots if "@incident-RUN" in s)
    return {
        "datasets": [_without_golden_stamp(d) for d in datasets],
        "snapshots": [_without_golden_stamp(s) for s in snapshots],
        "holds": [_without_golden_stamp(" ".join(h.split()[:2])) for h in holds],
        "evidence snapshots per dataset": sorted(incident.items()),
        "restore clones left over": [d for d in datasets if ".restore-RUN" in d],
    }


def traffic(lab: Lab) -> dict[str, object]:
    """The www record's addresses and the web backend's server states, as the lab's servers say now."""
    inventory = load_inventory(lab.inventory_file)
    dns_block, haproxy_block = inventory.services["www"].traffic.dns, inventory.services["www"].traffic.haproxy
    assert dns_block is not None and haproxy_block is not None, "the lab inventory routes www by DNS and HAProxy"
    answer = DnsWatch(dns_block.server, dns_block.port, f"{dns_block.record}.{dns_block.zone}.").answer()
    rows = parse_servers_state(runtime_command(HaproxySocket(str(Path(haproxy_block.socket).expanduser())),
                                               f"show servers state {haproxy_block.backend}"))
    return {"dns": sorted(answer), "haproxy": sorted((r.server, r.admin_state) for r in rows)}


def _without_golden_stamp(text: str) -> str:
    return re.sub(r"golden-[0-9TZ]+", "golden-STAMP", text)


def _each_done_once(run: runstore.Run) -> bool:
    """No (step, host) pair succeeded twice: a resumed step was checked, not applied again on top."""
    done = [(r.step, r.host) for r in run.journal.records() if r.event == "step_succeeded"]
    return len(done) == len(set(done)) and all(p.state in (state.DONE, state.SKIPPED)
                                               for p in state.fold(run.journal.records()).values())


def _kill_at(process: subprocess.Popen[bytes], runs: Path, point: KillPoint, after_seq: int,
             timeout: float = 1200) -> bool:
    """Wait for ``point`` among the newest run's records after ``after_seq`` (or the process's end); kill -9."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        journal = _journal_file(runs)
        if journal is not None:
            if _seen(journal, point, after_seq):
                time.sleep(point.delay)
                if process.poll() is not None:
                    return False
                os.kill(process.pid, signal.SIGKILL)  # the process this function's caller started
                process.wait()
                return True
        time.sleep(0.1)
    return False


def _journal_file(runs: Path) -> Path | None:
    ids = runstore.list_ids(runs)
    path = runs / ids[-1] / "journal.sqlite" if ids else None
    return path if path and path.is_file() else None


def _query(journal: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql, args).fetchall()
    except sqlite3.Error:
        return []


def _last_seq(journal: Path) -> int:
    rows = _query(journal, "SELECT max(seq) FROM records")
    return int(rows[0][0] or 0) if rows else 0


def _seen(journal: Path, point: KillPoint, after_seq: int) -> bool:
    """The point's event in records this process wrote (a resume may replay an earlier step's start)."""
    rows = _query(journal, "SELECT step FROM records WHERE seq > ? AND event = ?", (after_seq, point.event))
    return any(point.step is None or step == point.step for (step,) in rows)


def _newest_run(runs: Path) -> runstore.Run:
    return runstore.open_run(runs, None)


def _command(args: list[str], lab: Lab, playbook: Path | None) -> list[str]:
    config = ["--inventory", str(lab.inventory_file), "--playbook", str(playbook)] if playbook else []
    return [sys.executable, "-m", "recovery", *args, *config, "--yes"]


def _start(args: list[str], lab: Lab, env: dict[str, str]) -> subprocess.Popen[bytes]:
    playbook = None if args[0] == "resume" else PLAYBOOKS / "recover.toml"
    log = open(Path(env["RECOVERY_RUNS"]).parent / "kill-matrix.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(_command(args, lab, playbook), env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)


def _recover(args: list[str], lab: Lab, env: dict[str, str], playbook: Path, check: bool) -> int:
    code = subprocess.run(_command(args, lab, playbook), env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=1800).returncode
    if check and code != 0:
        raise RuntimeError(f"`recover {' '.join(args)}` exited {code}")
    return code
