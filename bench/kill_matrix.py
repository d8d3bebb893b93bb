"""Kill-matrix summary: `kill -9` of `recover web` at points across the flow, a resume after each.

Prints each point (killed or not, seconds the attempt ran), eu-web's end state (it takes the
kills) compared with us-web's (the same attack, recovered uninterrupted by the same run), and the
share of resumes that reached that same end (goal 100 %). About 20 minutes on 2 cores (a lab,
golden, history, the 2009 attack, one killed-and-resumed recovery of both hosts).
Usage: python bench/kill_matrix.py [--lab-dir DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.lab import kill_matrix  # noqa: E402
from recovery.lab.fleet import Lab  # noqa: E402


def main(argv: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="recovery-kill-matrix-"))
    lab = Lab(Path(argv[argv.index("--lab-dir") + 1]) if "--lab-dir" in argv else work / "lab",
              progress=lambda line: None)
    env = {"RECOVERY_GOLDEN_STORE": str(work / "golden-store"), "RECOVERY_RUNS": str(work / "runs")}
    try:
        kill_matrix.prepare(lab, env, lambda line: print(line, flush=True))
        matrix = kill_matrix.run(lab, env, lambda line: print(line, flush=True))
    finally:
        lab.down(wipe=True)
    print(f"\n{'kill point':<48} {'killed':>7} {'seconds':>8}")
    for attempt in matrix.attempts:
        print(f"{attempt.point.label:<48} {'yes' if attempt.killed else 'no':>7} {attempt.seconds:8.1f}")
    resumes = matrix.kills
    same = resumes if matrix.same_end else 0
    print(f"\npoints tried {len(matrix.attempts)}, kills {matrix.kills}, final exit {matrix.final_exit}")
    print(f"resumes reaching the uninterrupted run's end: {same}/{resumes} "
          f"({same / resumes:.0%})   (goal 100 %)" if resumes else "no kill happened")
    for difference in matrix.differences:
        print(f"  differs: {difference}")
    return 0 if matrix.same_end and resumes >= 8 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
