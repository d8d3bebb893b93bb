"""`recover rehearse TARGET --scenario S`: the whole incident, in the lab, graded.

Lab up (building the image on first use), golden capture, a history of
ordinary work, the scenario's attack, then the real `recover TARGET --yes`
against the lab while DNS answers for the service are watched; last, checks
against the attack's ground truth. The recovery itself never reads the ground
truth: only the grading here does.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import dns.exception
import dns.message
import dns.query

from recovery.config.inventory import Inventory
from recovery.config.load import load_inventory
from recovery.config.targets import service_hosts
from recovery.engine import control, runstore, state
from recovery.engine.plan import Plan
from recovery.hostile import for_terminal
from recovery.lab import attacks, history
from recovery.lab.any_lab import AnyLab
from recovery.lab.lab_inventory import SERVICE
from recovery.report import model as report_model
from recovery.steps.restore import Restored, RestoreOutputs
from recovery.steps.traffic import ReturnOutputs
from recovery.steps.zfs_host import EVIDENCE_HOLD
from recovery.transport.result import TransportError
from recovery.zfs.manifest import manifest_files
from recovery.zfs.salvage import relative, with_snapshot_mounted

SCENARIOS = attacks.ATTACKS
PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
#: The timing that is the recovery's RTO: from its start to traffic back (the evidence copy follows).
TRAFFIC_BACK = "recover: traffic back"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Rehearsal:
    target: str
    scenario: str
    run_id: str = ""
    checks: list[Check] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each `recover` process
    quiet: bool = False  # the `recover` commands' output goes to stderr

    def as_dict(self) -> dict[str, Any]:
        """The result for `recover rehearse --json`."""
        return {"target": self.target, "scenario": self.scenario, "run": self.run_id, "passed": self.passed,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
                "seconds": self.timings, "phases": self.phases, "cpu": self.cpu,
                "rto": self.rto}

    @property
    def rto(self) -> float | None:
        """Seconds from the recovery's start to traffic back on recovered hosts (its journal says when)."""
        return self.timings.get(TRAFFIC_BACK)

    @property
    def overhead_share(self) -> float:
        """The orchestrator's own work (CPU time of `recover`) as a share of the run's wall time.

        The rest is waiting: on guests (boots, zfs, the console), BMCs and servers.
        """
        rto = self.timings.get("recover", 0.0)
        return self.cpu.get("recover", 0.0) / rto if rto else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


class DnsWatch:
    """Asks the authoritative server for the service's record twice a second, in the background."""

    def __init__(self, server: str, port: int, name: str) -> None:
        self.server, self.port, self.name = server, port, name
        self.seen: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def answer(self) -> frozenset[str]:
        reply = dns.query.udp(dns.message.make_query(self.name, "A"), self.server, port=self.port, timeout=2)
        return frozenset(r.to_text() for rrset in reply.answer for r in rrset)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.append((time.monotonic(), self.answer()))
            except (OSError, dns.exception.DNSException):
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> "DnsWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def rehearse(target: str, scenario: str, lab: AnyLab, say: Callable[[str], None], fresh: bool = True,
             unbootable: str | None = None, rescue: bool = True, quiet: bool = False) -> Rehearsal:
    """``fresh`` wipes an existing lab first: an attack's ground truth assumes an untouched fleet.

    ``unbootable`` names a host that never comes back from its boot: it has no rescue
    medium and its console password is wrong in the inventory the recovery uses (the
    failure rehearsal). Without ``rescue`` every host is recovered through its own
    single-user mode. ``quiet`` sends the output of the `recover` commands it runs to stderr
    (stdout is for the caller's JSON).
    """
    result = Rehearsal(target, scenario, quiet=quiet)
    timed = _stopwatch(result, say)
    if fresh:
        timed("lab down --wipe", lambda: lab.down(wipe=True))
    timed("lab up", lambda: lab.up())
    with lab.reach():  # the Vagrant fleet answers inside its network namespace only
        _attack_recover_grade(result, timed, say, target, scenario, lab, unbootable, rescue, fresh)
    return result


def _attack_recover_grade(result: Rehearsal, timed: Callable[[str, Callable[[], Any]], Any],
                          say: Callable[[str], None], target: str, scenario: str, lab: AnyLab,
                          unbootable: str | None, rescue: bool, fresh: bool) -> None:
    """Golden capture (a reused lab keeps its own), history, the attack, `recover TARGET`, and the grading:
    all where the guests answer."""
    env = {"RECOVERY_GOLDEN_STORE": str(lab.run_dir / "golden-store"), "RECOVERY_RUNS": str(lab.run_dir / "runs")}
    # Every host of the service has its golden image before it goes live, not only the one the alarm rang
    # on: the recovery sweeps the others against theirs.
    kept = "" if fresh else kept_golden(lab, Path(env["RECOVERY_GOLDEN_STORE"]))
    if kept:
        say(f"== golden capture: kept from an earlier rehearsal of this lab ({kept})")
    else:
        timed("golden capture", lambda: _recover(result, "golden", ["golden", SERVICE], lab.inventory_file, env,
                                                 PLAYBOOKS / "golden.toml"))
    timed("history", lambda: history.make_history(lab))
    truth_file = timed("attack", lambda: SCENARIOS[scenario](lab))
    service = load_inventory(lab.inventory_file).services[SERVICE].traffic.dns
    assert service is not None, "the lab inventory has the www DNS block"
    watch = DnsWatch(service.server, service.port, f"{service.record}.{service.zone}.")
    before = watch.answer()
    inventory = _changed_inventory(lab, unbootable, rescue)
    with watch:
        code = timed("recover", lambda: _recover(result, "recover", [target], inventory, env,
                                                 PLAYBOOKS / "recover.toml"))
    run = runstore.open_run(lab.run_dir / "runs", None)
    result.run_id = run.id
    records = run.journal.records()
    result.phases = report_model.phases(records)
    back = report_model.traffic_back(control.reopen(run)[1], records)
    if back is not None:
        result.timings[TRAFFIC_BACK] = round(back - records[0].ts, 1)
    truth = json.loads(Path(truth_file).read_text())
    result.checks = _grade(lab, run, truth, code, watch, before, service.mirror_address, unbootable)


def kept_golden(lab: AnyLab, store: Path) -> str:
    """The golden images a reused lab already holds, one per host of the service ("" when a host has none).

    A host that went through an earlier rehearsal may be left dirty (a recovery fooled on purpose):
    capturing it again would take the intruder's files as known-good. Its first golden stays the truth.
    """
    hosts = service_hosts(load_inventory(lab.inventory_file), SERVICE)
    manifests = {host: manifest_files(store, host) for host in hosts}
    if not all(manifests.values()):
        return ""
    return ", ".join(f"{host} {found[-1].stem}" for host, found in manifests.items())


def _stopwatch(result: Rehearsal, say: Callable[[str], None]) -> Callable[[str, Callable[[], Any]], Any]:
    def timed(label: str, action: Callable[[], Any]) -> Any:
        say(f"== {label}")
        start = time.monotonic()
        value = action()
        result.timings[label] = round(time.monotonic() - start, 1)
        say(f"== {label}: {result.timings[label]:.1f} s")
        return value
    return timed


def _changed_inventory(lab: AnyLab, unbootable: str | None, rescue: bool) -> Path:
    """The lab inventory, with no rescue medium for ``unbootable`` (or for every host without
    ``rescue``) and a root password reference for ``unbootable`` that names a wrong password."""
    if unbootable is None and rescue:
        return lab.inventory_file
    wrong = lab.run_dir / "wrong-root-password"
    wrong.write_text("not-the-root-password\n")
    lines, host = [], ""
    for line in lab.inventory_file.read_text().splitlines():
        if line.startswith("[hosts."):
            host = line.strip("[]").split(".")[1]
        if line.startswith("rescue = true") and (not rescue or host == unbootable):
            line = "rescue = false"
        if line.startswith("root_password") and host == unbootable:
            line = f'root_password = "file:{wrong}"'
        lines.append(line)
    changed = lab.run_dir / f"inventory-{unbootable or 'all'}-{'rescue' if rescue else 'single-user'}.toml"
    changed.write_text("\n".join(lines) + "\n")
    return changed


def _recover(result: Rehearsal, label: str, args: list[str], inventory: Path, env: dict[str, str],
             playbook: Path) -> int:
    """The real `recover` command, as an operator would type it, output passed through.

    Its CPU time (from wait4) is what the orchestrator itself spent, waiting excluded.
    """
    command = [sys.executable, "-m", "recovery", *args, "--inventory", str(inventory),
               "--playbook", str(playbook), "--yes"]
    process = subprocess.Popen(command, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                               stdout=sys.stderr if result.quiet else None)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    result.cpu[label] = round(usage.ru_utime + usage.ru_stime, 2)
    return process.returncode


def _grade(lab: AnyLab, run: runstore.Run, truth: dict[str, Any], code: int, watch: DnsWatch,
           before: frozenset[str], mirror: str, unbootable: str | None) -> list[Check]:
    pairs = state.fold(run.journal.records())
    _, plan = control.reopen(run)
    inventory = load_inventory(run.inventory_path)
    targeted = [h for h in inventory.hosts if h in _hosts_of(run)]
    expected_code = 1 if unbootable else 0
    checks = [Check("recover exit code", code == expected_code, f"exit {code} (expected {expected_code})")]
    for host in targeted:
        if host == unbootable:
            checks.append(_failed_check(pairs, host))
        elif host in truth["hosts"]:
            try:
                checks += _host_checks(lab, state.result_of(plan, pairs, host, RestoreOutputs), host,
                                       truth["hosts"][host])
            except TransportError as exc:
                checks.append(Check(f"{host}: reachable for grading", False, str(exc)))
    diverted = [t for t, seen in watch.seen if seen == frozenset({mirror})]
    checks.append(Check("mirror answered during the run", bool(diverted),
                        f"{len(diverted)} of {len(watch.seen)} DNS answers named the mirror {mirror}"))
    checks += _rotation_checks(lab, plan, pairs, inventory, truth, watch.answer(), before, unbootable, mirror)
    problems = run.journal.verify()
    checks.append(Check("journal verify", not problems, "; ".join(problems) or "chain intact"))
    return checks


def _rotation_checks(lab: AnyLab, plan: Plan, pairs: dict[tuple[str, str], state.PairState],
                     inventory: Inventory, truth: dict[str, Any], final: frozenset[str], before: frozenset[str],
                     unbootable: str | None, mirror: str) -> list[Check]:
    """Against the ground truth: no host in rotation holds a file the attack planted in its datasets; every
    host without one (and that boots) is back, and with none the traffic stays on the mirror; every host
    kept out is named, with why and what recovers it."""
    hosts = service_hosts(inventory, SERVICE)
    address = {h: inventory.hosts[h].public_address for h in hosts}
    try:  # the unbootable host sits in single-user mode without sshd: not examined, never wanted back
        holding = {h: ["(not examined: it never booted)"] if h == unbootable else
                   traces_left(lab, truth, h) for h in hosts}
    except TransportError as exc:
        return [Check("service hosts reachable for grading", False, str(exc))]
    serving = [h for h in hosts if address[h] in final]
    dirty = {h: holding[h] for h in serving if holding[h]}
    checks = [Check("no host in rotation holds an attack file", not dirty,
                    f"in rotation: {', '.join(serving) or 'none'}"
                    + "".join(f"; {h} holds {', '.join(paths)}" for h, paths in dirty.items()))]
    wanted = {address[h] for h in hosts if h != unbootable and not holding[h]} & before or {mirror}
    checks.append(Check("traffic returned (clean hosts only)", final == wanted,
                        f"www now {sorted(final)}, expected {sorted(wanted)}"
                        + (" (no clean host: it stays on the mirror)" if wanted == {mirror} else "")))
    decisions = _decisions(plan, pairs, hosts)
    for host in [h for h in hosts if h not in serving]:
        said = decisions.get(host, "")
        checks.append(Check(f"{host}: kept out and named", bool(said), said or "not named by `return`"))
    return checks


def _decisions(plan: Plan, pairs: dict[tuple[str, str], state.PairState], hosts: list[str]) -> dict[str, str]:
    """What `return` said about each host it kept out: its outputs, or its error when it failed (no host back)."""
    outputs = state.result_of(plan, pairs, "*", ReturnOutputs)
    if outputs is not None:
        return {h: f"{d.reason} — `{d.command}`" for h, d in outputs.hosts.items() if not d.admitted and d.command}
    returns = {p.id for p in plan.steps if p.step.kind == "return"}
    error = " ".join(p.error or "" for (step, host), p in pairs.items()
                     if step in returns and host == "*" and p.state == state.FAILED)
    return {h: error for h in hosts if f"{h}: " in error}


def traces_left(lab: AnyLab, truth: dict[str, Any], host: str) -> list[str]:
    """What of the attack's ground truth is still on ``host``, looked for over SSH from outside the recovery."""
    return _left(lab.guest(host), _traces(truth["hosts"].get(host, {})))


def _planted(host_truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Files the attack added, wherever they are (the root file system too)."""
    return [c for c in host_truth.get("changes", []) if c["type"] == "file" and c["change"] == "added"]


def _traces(host_truth: dict[str, Any]) -> list[dict[str, Any]]:
    """What can be looked for after the recovery: every file the attack added, and every file it
    changed in a recognisable way (a ``marker`` it wrote, such as the intruder's key)."""
    return _planted(host_truth) + [c for c in host_truth.get("changes", []) if c.get("marker")]


def _left(guest: Any, traces: list[dict[str, Any]]) -> list[str]:
    """The traces still on the guest's live file systems, looked for over SSH from outside the recovery."""
    probes = [f"grep -qF -- {shlex.quote(c['marker'])} {shlex.quote(c['path'])}" if c.get("marker")
              else f"test -e {shlex.quote(c['path'])}" for c in traces]
    return [c["path"] + (" (still modified)" if c.get("marker") else "")
            for c, found in zip(traces, _probed(guest, probes)) if found]


def _probed(guest: Any, probes: list[str]) -> list[bool]:
    """Whether each shell probe succeeds on the guest, all in one SSH login (a TCG guest's login costs
    about a second): one line ``yes`` or ``no`` per probe, in order, or the grading cannot go on."""
    if not probes:
        return []
    result = guest.run("\n".join(f"if {probe}; then echo yes; else echo no; fi" for probe in probes))
    answers = result.stdout.decode(errors="replace").split()
    if len(answers) != len(probes) or not set(answers) <= {"yes", "no"}:
        raise TransportError(f"{guest.name}: {len(probes)} probes for the grading answered "
                             f"{for_terminal(result.stdout + result.stderr, 200)}")
    return [answer == "yes" for answer in answers]


def _hosts_of(run: runstore.Run) -> list[str]:
    for rec in run.journal.records():
        if rec.event == "run_started":
            return list(rec.data.get("hosts", []))
    return []


def _failed_check(pairs: dict[tuple[str, str], state.PairState], host: str) -> Check:
    failed = [(step, p.error) for (step, h), p in pairs.items() if h == host and p.state == state.FAILED]
    return Check(f"{host}: reported failed, left out", bool(failed) and failed[0][0] == "boot_single",
                 f"failed at {failed[0][0]}: {failed[0][1]}" if failed else "not reported failed")


def _host_checks(lab: AnyLab, result: RestoreOutputs | None, host: str,
                 host_truth: dict[str, Any]) -> list[Check]:
    guest = lab.guest(host)
    planted = _planted(host_truth)
    traces = _traces(host_truth)
    restored = result.datasets if result else {}
    left = _left(guest, traces)
    checks = [Check(f"{host}: nothing of the attack left on the host", not left and bool(traces),
                    f"{len(traces) - len(left)} of {len(traces)} traces gone" + (f"; left: {left}" if left else ""))]
    kept = _in_quarantine(guest, planted, restored)
    checks.append(Check(f"{host}: the quarantine holds them", kept == len(planted),
                        f"{kept} of {len(planted)} found in the held evidence snapshots"))
    held = _held(guest, [r.evidence for r in restored.values()])
    checks.append(Check(f"{host}: evidence snapshots held", bool(restored) and len(held) == len(restored),
                        f"{len(held)} of {len(restored)} held"))
    outside = [c["path"] for c in host_truth["changes"] if not c["dataset"]]
    checks.append(Check(f"{host}: every path the attack changed is in a protected dataset", not outside,
                        ", ".join(outside) + ": no snapshot covers them, so no recovery can vouch for them"
                        if outside else "all covered by snapshots"))
    return checks


def _held(guest: Any, snapshots: list[str]) -> list[str]:
    """The snapshots that carry the recovery's evidence hold, from one ``zfs holds``."""
    if not snapshots:
        return []
    rows = guest.run(f"zfs holds -H {' '.join(shlex.quote(s) for s in snapshots)}").stdout.decode(errors="replace")
    tagged = {tuple(line.split("\t")[:2]) for line in rows.splitlines()}
    return [s for s in snapshots if (s, EVIDENCE_HOLD) in tagged]


def _in_quarantine(guest: Any, planted: list[dict[str, Any]], restored: dict[str, Restored]) -> int:
    """Mount each evidence snapshot read-only (no property changes) and look for the planted files."""
    holding = {d: mine for d in restored if (mine := [c for c in planted if c["dataset"] == d])}
    if not holding:
        return 0
    rows = guest.run(f"zfs get -H -o name,value mountpoint {' '.join(shlex.quote(d) for d in holding)}")
    mountpoints = dict(line.split("\t", 1) for line in rows.stdout.decode(errors="replace").splitlines()
                       if "\t" in line)
    found = 0
    for dataset, mine in holding.items():
        probes = [f"test -e \"$d\"/{shlex.quote(relative(c['path'], mountpoints.get(dataset, '')))} && echo FOUND"
                  for c in mine]
        found += guest.run(with_snapshot_mounted(restored[dataset].evidence, probes)).stdout.count(b"FOUND")
    return found
