"""The fault table: each injected fault, the affected host's outcome, the others', time to the verdict.

Runs the fault-injection tests (real sshd, BIND9, HAProxy, IPMI BMC, a full tmpfs) and reads
every run they left: which step failed where and with what message, how the other hosts
ended, and the seconds from the run's start to the first failure in its journal.
Usage: python bench/faults.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.engine import state  # noqa: E402
from recovery.engine.journal import Journal  # noqa: E402
from recovery.hostile import for_terminal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="recovery-faults-"))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--basetemp={base}",
                            "tests/integration/test_faults.py"], cwd=ROOT, capture_output=True, text=True)
    print(tests.stdout.strip().splitlines()[-1])
    print(f"\n{'fault (test)':<62} {'verdict s':>9}  affected -> others")
    for journal_file in sorted(base.glob("*/runs/*/journal.sqlite")):
        if journal_file.parents[2].is_symlink():  # pytest's "current" link to the last test's directory
            continue
        print(_row(journal_file.parents[2].name, Journal(journal_file)))
    print("(the disk-full run lived on the test's tmpfs, unmounted after it: exit 7, see the test)")
    return tests.returncode


def _row(test: str, journal: Journal) -> str:
    records = journal.records()
    pairs = state.fold(records)
    failed = [(s, h, p) for (s, h), p in pairs.items() if p.state == state.FAILED]
    first = min((p.finished for _, _, p in failed if p.finished), default=None)
    verdict = f"{first - records[0].ts:9.2f}" if first else "        -"
    affected = "; ".join(f"{h} {s} failed: {for_terminal(p.error or '', 110)}" for s, h, p in failed) or "none failed"
    others = sorted({h for (_, h), p in pairs.items() if p.state == state.DONE} - {h for _, h, _ in failed})
    return f"{test[:62]:<62} {verdict}  {affected} -> done: {', '.join(others) or '-'}"


if __name__ == "__main__":
    sys.exit(main())
