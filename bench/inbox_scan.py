"""The intake's cost in a crowded inbox: a folder of frames or a NAS share holds thousands of
files that are not jobs, and the scan runs every half second while anything settles.

In this process (the intake alone, a real SQLite store and outbox in a temporary folder):
a scan of an inbox of OTHER files; JOBS pairs with their sidecars taken beside them; WAITING
sidecars whose images have not come, scanned and swept (the sweep ends waiting jobs whose sidecar
left). Medians of 3.

    python bench/inbox_scan.py [--other 20000] [--jobs 50] [--waiting 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--waiting", type=int, default=300)
    args = ap.parse_args()

    import importlib

    from intakekit import IntakeDir

    importlib.import_module("nst_engine.memory")  # torch, imported by the first estimate: not the intake's cost

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    scans, takes, waits, sweeps = [], [], [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp, IntakeDir(Path(tmp), missing_timeout=3600) as box:
            for i in range(args.other):
                (box.inbox / f"frame{i:05}.dat").write_text("x")
            box.scan()
            scans.append(timed(box.scan))
            for i in range(args.jobs):
                box.drop(f"job{i:03}")
            takes.append(timed(box.scan) / args.jobs)
            for i in range(args.waiting):
                (box.inbox / f"wait{i:03}.toml").write_text("")
            box.scan()
            waits.append(timed(box.scan))
            sweeps.append(timed(box.intake.sweep))
    print(f"inbox of {args.other} other files: a scan {statistics.median(scans):.0f} ms; "
          f"each of {args.jobs} jobs taken {statistics.median(takes):.1f} ms; "
          f"with {args.waiting} sidecars waiting: a scan {statistics.median(waits):.0f} ms, "
          f"a sweep {statistics.median(sweeps):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
