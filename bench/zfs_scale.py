"""ZFS at scale on one lab guest (real OpenZFS, QEMU): restore vs rsync, `zfs diff` vs a sha256 walk,
newest-clean bisection vs a linear scan, printed side by side in one run.

1. Restore of 100 MB, 1 GB and 4 GB datasets (incompressible files of 4 KB .. 48 MB, really written)
   through `recover`'s restore (clone + promote + swap: ``recovery.zfs.swap.restore`` through the served
   agent) vs rsync from a backup copy kept in another dataset: ``rsync -a backup/ empty/``, and
   ``rsync -a --checksum --delete backup/ compromised/`` (after an intrusion mtimes cannot be trusted).
   Each dataset is snapshotted @good and then compromised (files changed, added, removed) first. Also
   shown: the same ZFS operations as plain ``zfs`` commands in one process, the floor under the agent.
   Goal: restore flat, < 2 s at each size, and >= 50x faster than ``rsync -a`` at 1 GB.
2. Triage of 100 changes among 100k files (a web root's mix: many small html/css/js/png/jpg/json
   files, a few large media files): ``zfs diff`` + triage (``recovery.steps.zfs_host.triaged``) vs a
   full sha256 walk compared with the list stored at golden (what AIDE does). Goal: >= 20x.
3. Newest-clean search over 256 snapshots after golden (each after the site's index page and stats
   file were rewritten), a web shell appearing at a known snapshot and staying:
   ``recovery.zfs.find_clean.find_newest_clean`` with each probe a triaged diff from golden: by
   bisection (one probe a round), with two probes a round side by side (the find_clean step's default:
   fewer rounds, a few more diffs), and a linear scan from the newest snapshot back to the first clean
   one. Goal: <= 9 diffs (bisection).

They run in the order 3, 2, 1 (the 4 GB restore last); each prints its table when done, and all three
are printed together at the end. Caches are dropped in the guest before every timed measurement. The
guest runs under TCG when KVM is not usable; its tank disk is made larger than the lab's default.
Run: .venv/bin/python bench/zfs_scale.py [--sizes 100M,1G,4G] [--files 100000] [--snapshots 256]
     (quick smoke: --sizes 100M --files 2000 --snapshots 16)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from recovery.hostile import for_terminal
from recovery.lab.fleet_setup import script
from recovery.lab.rootpool import build_lab_image
from recovery.lab.vm import Guest
from recovery.steps.zfs_host import snapshots, triaged
from recovery.transport.result import Result
from recovery.transport.ssh import SshSession
from recovery.zfs import swap
from recovery.zfs.client import AgentClient
from recovery.zfs.diff import FileType
from recovery.zfs.find_clean import find_newest_clean
from recovery.zfs.pipeline import side_by_side
from recovery.zfs.triage import Finding, indicators

BOOT_TIMEOUT = 1200.0
SETUP_TIMEOUT = 7200.0
RUN_ID = "zs"
TOOL = "/root/zfs_scale_tool.py"
PARENT = "tank/zs"
#: Files of the dataset the snapshot history is made on.
HISTORY_FILES = 2000
#: Files changed, added and removed before each restore ("compromise").
RESTORE_CHANGES = 35
#: Seconds to wait at most for the pool to finish freeing destroyed datasets before a measurement.
FREEING_WAIT = 900
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
T = TypeVar("T")

#: Run inside the guest with its own python3 (standard library only): makes the data, changes it, checks it.
GUEST_TOOL = r'''
import filecmp, json, multiprocessing, os, random, subprocess, sys, time

RANDOM_FILE = "/root/zfs-scale-random"
RANDOM_SIZE = 64 << 20
# (extension, name, weight, smallest, largest): a web root's mix; a few large media files come on top
WEB_MIX = (("html", "page", 30, 1 << 10, 16 << 10), ("css", "style", 8, 1 << 10, 12 << 10),
           ("js", "app", 15, 1 << 10, 32 << 10), ("png", "img", 25, 1 << 10, 48 << 10),
           ("jpg", "photo", 15, 8 << 10, 96 << 10), ("json", "data", 7, 200, 4 << 10))
LARGE = ("pdf", "zip", "mp4")
STARTED = time.monotonic()
_made = set()


def note(text):
    print("[guest %7.1f s] %s" % (time.monotonic() - STARTED, text), flush=True)


def random_pool():
    """64 MB from /dev/urandom, made once; every file is a slice of it at its own offset, behind a
    header naming the file, so no record compresses and no two files share block-aligned content."""
    if not os.path.exists(RANDOM_FILE) or os.path.getsize(RANDOM_FILE) != RANDOM_SIZE:
        with open("/dev/urandom", "rb") as source, open(RANDOM_FILE + ".new", "wb") as sink:
            for _ in range(RANDOM_SIZE >> 20):
                sink.write(source.read(1 << 20))
        os.rename(RANDOM_FILE + ".new", RANDOM_FILE)
    with open(RANDOM_FILE, "rb") as source:
        return memoryview(source.read())


def write(roots, rel, size, pool, rng):
    header = ("%s %d\n" % (rel, rng.getrandbits(64))).encode()
    start = rng.randrange(RANDOM_SIZE - size)
    body = pool[start:start + max(0, size - len(header))]
    for root in roots:
        path = os.path.join(root, rel)
        folder = os.path.dirname(path)
        if folder not in _made:
            os.makedirs(folder, exist_ok=True)
            _made.add(folder)
        with open(path, "wb") as sink:
            sink.write(header)
            sink.write(body)


def tree(total, seed, *roots):
    """Files of mixed sizes (4 KB .. 48 MB) adding up to ``total`` bytes, the same in every root."""
    rng, pool = random.Random(seed), random_pool()
    left, count = total, 0
    while left > 0:
        draw = rng.random()
        low, high = ((4 << 10, 64 << 10) if draw < 0.35 else (64 << 10, 1 << 20) if draw < 0.75
                     else (1 << 20, 8 << 20) if draw < 0.95 else (8 << 20, 48 << 20))
        size = min(left, rng.randrange(low, high))
        write(roots, "d%03d/file-%05d.dat" % (count // 50, count), size, pool, rng)
        left -= size
        count += 1
        if (total - left - size) >> 30 != (total - left) >> 30:
            note("%d MB" % ((total - left) >> 20))
    return {"files": count, "bytes": total}


CHUNK = 5000
_site = {}


def site(root, files, seed):
    """A web root: ``files`` files in directories of 100, a few of them large; one writer per CPU."""
    rng = random.Random(seed)
    _site.update(root=root, seed=seed, pool=random_pool())
    large = max(1, files // 10000)
    total = 0
    with multiprocessing.Pool(os.cpu_count()) as workers:
        chunks = [(start, min(start + CHUNK, files - large)) for start in range(0, files - large, CHUNK)]
        for done, written in enumerate(workers.imap_unordered(_site_chunk, chunks), start=1):
            total += written
            if done % 4 == 0:
                note("%d of %d files, %d MB" % (done * CHUNK, files, total >> 20))
    for k in range(large):
        size = rng.randrange(8 << 20, 24 << 20)
        write([_site["root"]], "media/big-%03d.%s" % (k, LARGE[k % len(LARGE)]), size, _site["pool"], rng)
        total += size
    return {"files": files, "bytes": total}


def _site_chunk(span):
    rng = random.Random(_site["seed"] * 1000003 + span[0])
    weights = [kind[2] for kind in WEB_MIX]
    total = 0
    for k in range(*span):
        ext, stem, _, low, high = rng.choices(WEB_MIX, weights)[0]
        size = rng.randrange(low, high)
        rel = "s%02d/d%04d/%s-%06d.%s" % (k // 10000, k // 100, stem, k, ext)
        write([_site["root"]], rel, size, _site["pool"], rng)
        total += size
    return total


def all_files(root):
    found = []
    for top, dirs, names in os.walk(root):
        dirs.sort()
        found += [os.path.join(top, name) for name in sorted(names)]
    return found


def change(root, count, seed, manifest, script_name):
    """``count`` changes: 60% files rewritten in place, 10% removed, 30% added (the first one named
    ``script_name``); their paths, relative to ``root``, go to ``manifest``."""
    rng = random.Random(seed)
    files = all_files(root)
    modify, remove = min(count * 6 // 10, len(files) // 2), min(count // 10, len(files) // 10)
    chosen = rng.sample(files, modify + remove)
    for path in chosen[:modify]:
        with open(path, "r+b") as sink:
            sink.write(os.urandom(4096))
    for path in chosen[modify:]:
        os.remove(path)
    folders = sorted({os.path.dirname(path) for path in files})
    added = []
    for i in range(count - count * 6 // 10 - count // 10):
        name = script_name if i == 0 and script_name else "upload-%d-%03d.html" % (seed, i)
        added.append(os.path.join(rng.choice(folders), name))
        with open(added[-1], "wb") as sink:
            sink.write(os.urandom(rng.randrange(512, 16 << 10)))
    with open(manifest, "w") as out:
        out.write("".join(os.path.relpath(p, root) + "\n" for p in chosen + added))
    return {"modified": modify, "removed": remove, "added": len(added), "scanned": len(files)}


def verify(first, second, manifest):
    """The manifest's paths are the same in both trees: absent from both, or the same bytes."""
    with open(manifest) as lines:
        paths = [line.rstrip("\n") for line in lines if line.strip()]
    differ = []
    for rel in paths:
        a, b = os.path.join(first, rel), os.path.join(second, rel)
        if os.path.exists(a) != os.path.exists(b) or (os.path.exists(a) and not filecmp.cmp(a, b, shallow=False)):
            differ.append(rel)
    return {"checked": len(paths), "differ": differ[:5], "differ_count": len(differ)}


def snapshot(name):
    try:
        import libzfs_core
        libzfs_core.lzc_snapshot([name.encode()])
    except ImportError:
        subprocess.run(["/usr/sbin/zfs", "snapshot", name], check=True)


def history(dataset, root, files, count, attack, seed):
    """@golden-bench, then ``count`` snapshots @auto-NNN, each after the site's index page and its
    stats file were rewritten (as a CMS does every hour); a web shell (uploads/thumb.php) is added
    before @auto-<attack> and stays; then @incident-bench."""
    site(root, files, seed)
    pages = [os.path.join(root, "index.html"), os.path.join(root, "stats.json")]
    for path in pages:
        with open(path, "wb") as sink:
            sink.write(os.urandom(2048))
    snapshot(dataset + "@golden-bench")
    for i in range(count):
        for path in pages:
            with open(path, "wb") as sink:
                sink.write(os.urandom(2048 + i))
        if i == attack:
            os.makedirs(os.path.join(root, "uploads"), exist_ok=True)
            with open(os.path.join(root, "uploads", "thumb.php"), "wb") as sink:
                sink.write(b"<?php /* stands for an uploaded web shell */ ?>\n")
        snapshot("%s@auto-%03d" % (dataset, i))
        if i and i % 64 == 0:
            note("%d snapshots" % i)
    with open(pages[0], "wb") as sink:
        sink.write(os.urandom(4096))
    snapshot(dataset + "@incident-bench")
    return {"snapshots": count, "attack": "auto-%03d" % attack}


def cli_swap(dataset, mountpoint):
    """The ZFS operations of a restore as plain ``zfs`` commands in one process: the floor under the
    agent. Snapshot @cli-good, change a file, then clone, promote, rename, seal, rename, mountpoint, mount."""
    def zfs(*args):
        return subprocess.run(["/usr/sbin/zfs"] + list(args), check=True, stdout=subprocess.PIPE).stdout
    zfs("snapshot", dataset + "@cli-good")
    with open(os.path.join(mountpoint, "cli-changed"), "wb") as sink:
        sink.write(os.urandom(4096))
    started = time.monotonic()
    zfs("clone", dataset + "@cli-good", dataset + ".cli")
    zfs("promote", dataset + ".cli")
    zfs("rename", dataset, dataset + ".cliq")
    zfs("set", "readonly=on", "canmount=off", dataset + ".cliq")
    zfs("rename", dataset + ".cli", dataset)
    zfs("set", "mountpoint=" + mountpoint, dataset)
    if zfs("get", "-Ho", "value", "mounted", dataset).strip() != b"yes":
        zfs("mount", dataset)
    seconds = time.monotonic() - started
    return {"seconds": seconds, "restored": not os.path.exists(os.path.join(mountpoint, "cli-changed"))}


COMMANDS = {"tree": tree, "site": site, "change": change, "verify": verify, "history": history,
            "cli_swap": cli_swap}

if __name__ == "__main__":
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    result = COMMANDS[sys.argv[1]](*args)
    print("RESULT " + json.dumps(result), flush=True)
'''


class Clock:
    """Progress lines with the time since the start of the run and the host's load."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f} s, load {os.getloadavg()[0]:4.1f}] {text}", flush=True)


CLOCK = Clock()


class TimedClient(AgentClient):
    """The served agent client, keeping each operation it asks for and its wall time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ops: list[tuple[str, float]] = []

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        start = time.monotonic()
        try:
            return super().call(op, **args)
        finally:
            self.ops.append((op, time.monotonic() - start))


def op_summary(ops: list[tuple[str, float]]) -> str:
    """``list 5x 0.41 s, get 8x 0.38 s``: count and mean wall time of each operation."""
    by_op: dict[str, list[float]] = {}
    for op, seconds in ops:
        by_op.setdefault(op, []).append(seconds)
    return ", ".join(f"{op} {len(s)}x {statistics.mean(s):.2f} s" for op, s in by_op.items())


def timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.monotonic()
    value = action()
    return time.monotonic() - start, value


def sh(session: SshSession, command: str, timeout: float = SETUP_TIMEOUT, stdin: bytes | None = None) -> Result:
    result = session.run(command, timeout=timeout, stdin=stdin)
    if not result.ok:
        raise RuntimeError(f"guest: {command[:200]} failed (exit {result.exit_code}):\n"
                           f"{for_terminal(result.stdout[-2000:] + result.stderr[-2000:], limit=4000)}")
    return result


def cold(session: SshSession) -> None:
    """Before each timed measurement: the frees of datasets destroyed before it finished (a pool still
    freeing does that work in every transaction group, which clone, rename and set wait for), dirty
    data written out, and the page cache and ARC dropped as far as the kernel lets them go, so neither
    side reads data that setup left in memory; then the tools both sides run are read back in, as they
    are on a host that has been running."""
    result = sh(session, "i=0; while [ \"$(/usr/sbin/zpool get -Hpo value freeing tank)\" != 0 ] && "
                         f"[ $i -lt {FREEING_WAIT} ]; do sleep 1; i=$((i+1)); done; "
                         "/usr/sbin/zpool sync tank && sync && echo 3 > /proc/sys/vm/drop_caches && "
                         "/usr/sbin/zfs list -H -o name tank >/dev/null && /usr/sbin/zpool list -H tank >/dev/null && "
                         "rsync --version >/dev/null && sha256sum --version >/dev/null && find --version >/dev/null && "
                         "sort --version >/dev/null && echo $i")
    waited = int(result.stdout.split()[-1])
    if waited:
        CLOCK.say(f"(waited {waited} s for the pool to finish freeing destroyed datasets)")


def tool(session: SshSession, *args: object) -> dict[str, Any]:
    """One command of the guest tool; its progress lines are echoed, its RESULT line returned."""
    result = sh(session, f"/usr/bin/python3 {TOOL} {' '.join(shlex.quote(str(a)) for a in args)}")
    lines = result.stdout.decode(errors="replace").splitlines()
    for line in lines:
        if line.startswith("[guest"):
            CLOCK.say(line)
    return json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[7:])


def step(label: str, action: Callable[[], T]) -> T:
    seconds, value = timed(action)
    CLOCK.say(f"{label}: {seconds:.1f} s")
    return value


def measured(label: str, action: Callable[[], object]) -> float:
    seconds, _ = timed(action)
    CLOCK.say(f"{label}: {seconds:.1f} s")
    return seconds


def size_bytes(label: str) -> int:
    unit = label[-1].upper()
    return int(float(label[:-1]) * UNITS[unit]) if unit in UNITS else int(label)


# -- 1. restore vs rsync ----------------------------------------------------------


@dataclass
class RestoreRow:
    label: str
    files: int
    restore: float
    ops: list[tuple[str, float]]
    cli: float
    rsync: float
    checksum: float
    verified: bool


def restore_row(session: SshSession, client: TimedClient, label: str, seed: int) -> RestoreRow:
    base, mnt = f"{PARENT}/r{label}", f"/srv/bench/{label}"
    live, manifest = f"{base}/live", f"/root/changes-{label}"
    sh(session, f"zfs create -o mountpoint=none {base} && zfs create -o mountpoint={mnt}/live {live} && "
                f"zfs create -o mountpoint={mnt}/backup {base}/backup")
    made = step(f"{label}: written to live and to the backup copy",
                lambda: tool(session, "tree", size_bytes(label), seed, f"{mnt}/live", f"{mnt}/backup"))
    sh(session, f"zfs snapshot {live}@good")
    changed = tool(session, "change", f"{mnt}/live", RESTORE_CHANGES, seed, manifest, "wp-cache.php")
    sh(session, f"zfs snapshot {live}@bad")
    CLOCK.say(f"{label}: {made['files']} files, @good, then compromised: {changed}")
    names = swap.SwapNames.for_run(live, RUN_ID)
    cold(session)
    first = len(client.ops)
    restore_s, _ = timed(lambda: swap.restore(client, names, f"{live}@good"))
    ops = client.ops[first:]
    CLOCK.say(f"{label}: restore (clone + promote + swap): {restore_s:.2f} s; agent operations: {op_summary(ops)}")
    ok = _same(session, f"{mnt}/live", f"{mnt}/backup", manifest)
    sh(session, f"zfs clone -o mountpoint={mnt}/checksum {names.quarantine}@bad {base}/checksum")
    cold(session)
    checksum_s = measured(f"{label}: rsync -a --checksum --delete over the compromised tree",
                          lambda: sh(session, f"rsync -a --checksum --delete {mnt}/backup/ {mnt}/checksum/"))
    ok &= _same(session, f"{mnt}/checksum", f"{mnt}/backup", manifest)
    sh(session, f"zfs destroy -R {live} && zfs create -o mountpoint={mnt}/target {base}/target")
    cold(session)
    rsync_s = measured(f"{label}: rsync -a backup/ into an empty dataset",
                       lambda: sh(session, f"rsync -a {mnt}/backup/ {mnt}/target/"))
    ok &= _same(session, f"{mnt}/target", f"{mnt}/backup", manifest)
    cold(session)
    cli = tool(session, "cli_swap", f"{base}/target", f"{mnt}/target")
    CLOCK.say(f"{label}: the same ZFS operations as plain zfs commands in one process: {cli['seconds']:.2f} s")
    sh(session, f"zfs destroy -R {base}")
    return RestoreRow(label, made["files"], restore_s, ops, cli["seconds"], rsync_s, checksum_s, ok and cli["restored"])


def _same(session: SshSession, tree: str, backup: str, manifest: str) -> bool:
    checked = tool(session, "verify", tree, backup, manifest)
    if checked["differ_count"]:
        CLOCK.say(f"MISMATCH {tree} vs {backup}: {checked}")
    return not checked["differ_count"]


def print_restores(rows: list[RestoreRow]) -> None:
    print(f"1. restore vs rsync from a backup copy (each dataset compromised after @good: {RESTORE_CHANGES} files "
          "changed, added or removed; caches dropped before each)")
    print(f"{'size':>6} {'files':>6} {'restore':>9} {'agent ops':>9} {'zfs CLI':>9} {'rsync -a':>10} {'x':>7} "
          f"{'rsync --checksum':>17} {'x':>7}  verified")
    for r in rows:
        print(f"{r.label:>6} {r.files:>6} {r.restore:>7.2f} s {len(r.ops):>9} {r.cli:>7.2f} s {r.rsync:>8.1f} s "
              f"{r.rsync / r.restore:>6.1f}x {r.checksum:>15.1f} s {r.checksum / r.restore:>6.1f}x  "
              f"{'yes' if r.verified else 'NO'}")
    for r in rows:
        print(f"   {r.label} restore, agent operations (count, mean wall time): {op_summary(r.ops)}")
    worst = max(rows, key=lambda r: r.restore)
    print(f"   goal restore < 2 s at each size: {'met' if worst.restore < 2 else 'MISSED'} "
          f"(slowest {worst.label}: {worst.restore:.2f} s)")
    for r in rows:
        if size_bytes(r.label) == UNITS["G"]:
            print(f"   goal >= 50x faster than rsync -a at 1 GB: {r.rsync / r.restore:.1f}x "
                  f"({'met' if r.rsync / r.restore >= 50 else 'MISSED'})")


# -- 2. zfs diff + triage vs a sha256 walk -------------------------------------------


@dataclass
class TriageRow:
    files: int
    megabytes: int
    changes: int
    triage: float
    ops: list[tuple[str, float]]
    cli_diff: float
    found_files: int
    found_dirs: int
    found_indicators: int
    walk: float
    walk_found: int


def walk_command(root: str, out: str) -> str:
    """What AIDE does: hash every file, sorted, into ``out``."""
    return f"cd {root} && find . -type f -exec sha256sum {{}} + | LC_ALL=C sort > {out}"


def triage_row(session: SshSession, client: TimedClient, files: int, seed: int) -> TriageRow:
    dataset, root = f"{PARENT}/site", "/srv/www/bench-site"
    golden, incident = f"{dataset}@golden-bench", f"{dataset}@incident-bench"
    count = min(100, files // 10)
    sh(session, f"zfs create -o mountpoint={root} {dataset}")
    made = step(f"site: {files} files written", lambda: tool(session, "site", root, files, seed))
    sh(session, f"zfs snapshot {golden}")
    step("site: sha256 list stored at golden (not timed: AIDE's database)",
         lambda: sh(session, walk_command(root, "/root/aide.base")))
    changed = tool(session, "change", root, count, seed, "/root/changes-site", "shell.php")
    sh(session, f"zfs snapshot {incident}")
    CLOCK.say(f"site: {made['bytes'] >> 20} MB; {changed}")
    cold(session)
    first = len(client.ops)
    triage_s, findings = timed(lambda: triaged(client, golden, incident))
    ops = client.ops[first:]
    CLOCK.say(f"site: zfs diff + triage: {triage_s:.2f} s, {len(findings)} findings; agent operations: "
              f"{op_summary(ops)}")
    cold(session)
    cli_s = measured("site: zfs diff -FHt alone, in one shell",
                     lambda: sh(session, f"/usr/sbin/zfs diff -FHt {golden} {incident} > /dev/null"))
    cold(session)
    walk_s, walked = timed(lambda: sh(session, walk_command(root, "/root/aide.now") + " && LC_ALL=C comm -3 "
                                      "/root/aide.base /root/aide.now | sed 's/^\t//' | cut -c67- | "
                                      "LC_ALL=C sort -u | wc -l"))
    CLOCK.say(f"site: sha256 walk + compare: {walk_s:.1f} s")
    sh(session, f"zfs destroy -r {dataset}")
    return TriageRow(files, made["bytes"] >> 20, count, triage_s, ops, cli_s, _typed(findings, FileType.FILE),
                     _typed(findings, FileType.DIRECTORY), len(indicators(findings)), walk_s,
                     int(walked.stdout.split()[0]))


def _typed(findings: list[Finding], kind: FileType) -> int:
    return sum(1 for f in findings if f.change.file_type is kind)


def print_triage(t: TriageRow) -> None:
    print(f"2. triage of {t.changes} changes among {t.files} files ({t.megabytes} MB, web-root mix; "
          "caches dropped before each)")
    print(f"   zfs diff + triage (agent)            {t.triage:8.2f} s   {t.found_files} files changed "
          f"(+{t.found_dirs} directories whose entries changed), {t.found_indicators} indicator(s)")
    print(f"     agent operations                   {op_summary(t.ops)}")
    print(f"     zfs diff -FHt alone, one shell     {t.cli_diff:8.2f} s")
    print(f"   sha256 walk + compare (AIDE-like)    {t.walk:8.2f} s   {t.walk_found} paths changed")
    agree = t.found_files == t.walk_found == t.changes
    print(f"   ratio {t.walk / t.triage:.1f}x (goal >= 20x: {'met' if t.walk / t.triage >= 20 else 'MISSED'}); "
          f"counts {'agree' if agree else 'DIFFER'} (expected {t.changes})")


# -- 3. newest-clean search ---------------------------------------------------------


@dataclass
class SearchRow:
    count: int
    attack: str
    expected: str
    incident_s: float
    search_s: float
    search_diffs: int
    search_chose: str
    status: str
    probes_s: float
    probes_diffs: int
    probes_rounds: int
    probes_chose: str
    linear_s: float
    linear_diffs: int
    linear_chose: str


def search_row(session: SshSession, client: TimedClient, count: int, seed: int) -> SearchRow:
    dataset, root = f"{PARENT}/hist", "/srv/www/bench-hist"
    attack = count * 5 // 8
    sh(session, f"zfs create -o mountpoint={root} {dataset}")
    step(f"history: {HISTORY_FILES} files and {count} snapshots",
         lambda: tool(session, "history", dataset, root, HISTORY_FILES, count, attack, seed))
    golden, incident = f"{dataset}@golden-bench", f"{dataset}@incident-bench"
    txg = {s.name: s.createtxg for s in snapshots(client, dataset)}
    between = [name for name in sorted(txg, key=txg.__getitem__) if txg[golden] < txg[name] < txg[incident]]
    if len(between) != count:
        raise RuntimeError(f"{len(between)} snapshots between golden and incident, {count} made")
    expected = between[attack - 1] if attack else golden

    def dirty(snapshot: str) -> list[Finding]:
        return indicators(triaged(client, golden, snapshot))

    cold(session)
    incident_s, at_incident = timed(lambda: dirty(incident))
    search_s, search = timed(lambda: find_newest_clean(golden, between, dirty, incident=at_incident))
    CLOCK.say(f"history: bisection: {search.diff_calls} diffs, {search_s:.1f} s, chose {search.clean}")
    cold(session)
    rounds: list[int] = []

    def counted(work: Callable[[str], list[Finding]], items: list[str]) -> list[list[Finding]]:
        rounds.append(len(items))
        return side_by_side(work, items)

    probes_s, two = timed(lambda: find_newest_clean(golden, between, dirty, incident=at_incident, probes=2,
                                                    side_by_side=counted))
    CLOCK.say(f"history: two probes a round: {two.diff_calls} diffs in {len(rounds)} rounds, {probes_s:.1f} s")
    cold(session)
    linear_s, (linear_diffs, linear_chose) = timed(lambda: _linear(between, golden, dirty))
    CLOCK.say(f"history: linear: {linear_diffs} diffs, {linear_s:.1f} s, chose {linear_chose}")
    sh(session, f"zfs destroy -r {dataset}")
    return SearchRow(count, between[attack], expected, incident_s, search_s, search.diff_calls, search.clean,
                     search.status.value, probes_s, two.diff_calls, len(rounds), two.clean, linear_s, linear_diffs,
                     linear_chose)


def _linear(between: list[str], golden: str, dirty: Callable[[str], list[Finding]]) -> tuple[int, str]:
    """Newest snapshot first, back to the first one without an indicator."""
    for diffs, snapshot in enumerate(reversed(between), start=1):
        if not dirty(snapshot):
            return diffs, snapshot
    return len(between), golden


def print_search(s: SearchRow) -> None:
    print(f"3. newest-clean search over {s.count} snapshots after golden (web shell first in {s.attack}, "
          f"so the newest clean is {s.expected})")
    print(f"   bisection (find_newest_clean)      {s.search_diffs:4} diffs {s.search_s:8.1f} s   chose "
          f"{s.search_chose} ({'right' if s.search_chose == s.expected else 'WRONG'}, {s.status}); "
          f"+1 diff of @incident before it, as the step does: {s.incident_s:.1f} s")
    print(f"   two probes a round, side by side   {s.probes_diffs:4} diffs {s.probes_s:8.1f} s   chose "
          f"{s.probes_chose} ({'right' if s.probes_chose == s.expected else 'WRONG'}), {s.probes_rounds} rounds "
          "(the find_clean step's default)")
    print(f"   linear, newest first to boundary   {s.linear_diffs:4} diffs {s.linear_s:8.1f} s   chose "
          f"{s.linear_chose} ({'right' if s.linear_chose == s.expected else 'WRONG'})")
    print(f"   goal <= 9 diffs: {'met' if s.search_diffs <= 9 else 'MISSED'}; "
          f"linear / bisection wall time {s.linear_s / s.search_s:.1f}x")


# -- the run -----------------------------------------------------------------------


def prepare(session: SshSession) -> None:
    sh(session, "sh -s", stdin=script("pool.sh").encode())
    sh(session, f"cat > {TOOL}", stdin=GUEST_TOOL.encode())
    sh(session, f"zfs create -o mountpoint=none {PARENT}")


def bench(session: SshSession, args: argparse.Namespace, accel: str) -> None:
    step("pool tank and the guest tool", lambda: prepare(session))
    client = TimedClient(session, served=True, timeout=SETUP_TIMEOUT)
    client.ping()  # started once per session, as a recovery does
    try:
        ping = statistics.median(timed(client.ping)[0] for _ in range(5))
        CLOCK.say(f"agent round trip (served ping, median of 5): {ping * 1000:.0f} ms")
        search = search_row(session, client, args.snapshots, 11)
        print_search(search)
        triage = triage_row(session, client, args.files, 7)
        print_triage(triage)
        restores = []
        for i, label in enumerate(args.sizes):
            restores.append(restore_row(session, client, label, 100 + i))
            print_restores(restores)
    finally:
        client.stop()
    print(f"\nSummary (lab guest under {accel}, 2 vCPUs; agent round trip {ping * 1000:.0f} ms; host load now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print_restores(restores)
    print_triage(triage)
    print_search(search)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda text: text.split(","), default=["100M", "1G", "4G"])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--snapshots", type=int, default=256)
    parser.add_argument("--memory", type=int, default=2048, help="guest memory in MB")
    parser.add_argument("--disk", default="12G", help="size of the guest's tank disk")
    args = parser.parse_args()
    image = build_lab_image(progress=lambda line: None)
    with tempfile.TemporaryDirectory(prefix="bench-zfs-") as tmp:
        guest = Guest(image, Path(tmp), "bench-zfs", memory_mb=args.memory)
        guest.dir.mkdir(parents=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(guest.data_disk), args.disk], check=True)
        try:
            guest.start()
            step(f"guest booted ({guest.accel}, {args.memory} MB, tank disk {args.disk})",
                 lambda: guest.wait_for_ssh(BOOT_TIMEOUT))
            with SshSession(guest.ssh_target(timeout=30.0)) as session:
                bench(session, args, guest.accel)
        finally:
            guest.stop()


if __name__ == "__main__":
    main()
