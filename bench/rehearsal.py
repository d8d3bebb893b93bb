"""RTO per phase of a lab rehearsal, and the orchestrator's overhead as a share of the RTO.

Overhead is the CPU time of the `recover` process (its own work: planning, journaling,
framing, parsing) against the wall time of the recovery; the rest is waiting on guests,
BMCs and servers. Goal: overhead <= 10 %.
Usage: python bench/rehearsal.py [awstats-2005|rsync-2009] [--lab-dir DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery import rehearsal  # noqa: E402
from recovery.lab.fleet import Lab  # noqa: E402


def main(argv: list[str]) -> int:
    scenario = next((a for a in argv if not a.startswith("--")), "awstats-2005")
    lab_dir = Path(argv[argv.index("--lab-dir") + 1]) if "--lab-dir" in argv else None
    lab = Lab(lab_dir, progress=lambda line: None)
    try:
        result = rehearsal.rehearse("eu-web", scenario, lab, lambda line: print(line, flush=True))
    finally:
        lab.down()
    print(f"\nscenario {scenario}: {'PASS' if result.passed else 'FAIL'}")
    for name, seconds in result.phases.items():
        print(f"  {name:<20} {seconds:8.1f} s")
    print(f"RTO (to traffic back)  {result.rto or 0:8.1f} s")
    print(f"whole run              {result.timings['recover']:8.1f} s   (the evidence copy follows `return`)")
    print(f"orchestrator CPU       {result.cpu['recover']:8.1f} s")
    print(f"overhead share         {result.overhead_share:8.1%}   (goal <= 10 %)")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
