"""Runs every tests/bench/bench_*.py with --smoke, one after another, and exits 1 if any missed its goal or failed.

Run: python tests/bench/run_smoke.py [-v] [NAME ...]   (NAME: part of a bench's file name, to run only those)
Prints each bench's GOAL line and its time; a failed bench's last output lines follow its line (all of it with -v).
Must not run the benches at once: their ratios need the machine to themselves as much as CI allows.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 150  # a smoke bench takes seconds; this only stops a hung one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="print every bench's whole output")
    parser.add_argument("names", nargs="*", help="run only the benches whose file name contains one of these")
    args = parser.parse_args()
    benches = sorted(path for path in HERE.glob("bench_*.py")
                     if not args.names or any(name in path.name for name in args.names))
    failed: list[str] = []
    started_all = time.perf_counter()
    for bench in benches:
        started = time.perf_counter()
        try:
            completed = subprocess.run([sys.executable, str(bench), "--smoke"], capture_output=True, text=True,
                                       timeout=TIMEOUT_S, cwd=HERE.parents[1])
            output, code = completed.stdout + completed.stderr, completed.returncode
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout or ""
            output = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            code = None
        seconds = time.perf_counter() - started
        lines = [line for line in output.splitlines() if line.startswith("GOAL ")]
        if code is None:
            result = f"TIMEOUT after {TIMEOUT_S} s"
        elif lines:
            result = lines[-1]
        else:
            result = f"no GOAL line (exit {code})"
        ok = code == 0 and bool(lines) and lines[-1].startswith("GOAL ok")
        print(f"{'ok    ' if ok else 'FAILED'} {bench.name:<28} {seconds:6.1f} s  {result}", flush=True)
        if args.verbose or not ok:
            tail = output.splitlines() if args.verbose else output.splitlines()[-25:]
            print("\n".join("    " + line for line in tail), flush=True)
        if not ok:
            failed.append(bench.name)
    total = time.perf_counter() - started_all
    print(f"{len(benches) - len(failed)} of {len(benches)} benches ok at --smoke in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed or not benches else 0


if __name__ == "__main__":
    sys.exit(main())
