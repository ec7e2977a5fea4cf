"""Benchmark: the offline summariser and follow-up answerer are linear in the text, in bounded memory.

Run: python tests/bench/bench_summariser_scaling.py [--sizes-mb 0.5,1,2,5] [--repeat N] [--layout paragraphs]
Each step runs in a fresh interpreter over 4-word random sentences (the worst case for a vocabulary: nearly
every word is new), run on in one paragraph or, with --layout paragraphs, one a paragraph. Seconds are the
step's own; peak RSS is the child's VmHWM. The floor measured in the same run is bare sentence splitting of the
same text, which every step pays first.
Goal: time(largest)/time(smallest) near the size ratio (10 for 0.5 → 5 MB); exit 1 past twice that, or when a
peak RSS passes 300 MB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS)]  # this checkout's pipeline/, not an installed copy
from test_summariser_scaling import PAGE_CAP_BYTES, PEAK_RSS_LIMIT_MB, measure_in_child  # noqa: E402

STEPS = ("split", "summarise", "answer")
MB = 1024 * 1024


def best_of(step: str, size: int, layout: str, repeat: int) -> tuple[float, float]:
    """(fastest seconds, highest peak MB) over `repeat` fresh children: the machine is noisy, memory is not."""
    runs = [measure_in_child(step, size, layout) for _ in range(repeat)]
    return min(float(r["seconds"]) for r in runs), max(float(r["peak_mb"]) for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default=f"0.5,1,2,{PAGE_CAP_BYTES / MB:g}")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--layout", choices=("run-on", "paragraphs"), default="run-on")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    table: dict[tuple[str, float], tuple[float, float]] = {}
    print(f"{'size':>7} | " + " | ".join(f"{step:>9} s  peak MB" for step in STEPS))
    for size in sizes:
        for step in STEPS:
            table[step, size] = best_of(step, int(size * MB), args.layout, args.repeat)
        print(f"{size:>5g}MB | " + " | ".join(f"{table[step, size][0]:>11.2f} {table[step, size][1]:>8.0f}"
                                           for step in STEPS), flush=True)
    return verdict(table, sizes)


def verdict(table: dict[tuple[str, float], tuple[float, float]], sizes: list[float]) -> int:
    small, large = sizes[0], sizes[-1]
    goal = large / small
    failed = False
    for step in STEPS:
        ratio = table[step, large][0] / table[step, small][0]
        over_floor = table[step, large][0] / table["split", large][0]
        peak = max(table[step, size][1] for size in sizes)
        print(f"{step:>9}: time({large:g}MB)/time({small:g}MB) = {ratio:.1f} (linear: {goal:.0f}, "
              f"fail > {2 * goal:.0f}) · {over_floor:.2f}x the splitting floor at {large:g}MB · "
              f"peak {peak:.0f} MB (limit {PEAK_RSS_LIMIT_MB})")
        if step != "split":  # the floor is shown for comparison; its scaling is sentencex's and markdown-it's
            failed |= ratio > 2 * goal or peak > PEAK_RSS_LIMIT_MB
    print("FAIL" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
