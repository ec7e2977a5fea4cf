"""Benchmark: the offline engine's real-time factor on sample_inputs/ with 1 and 2 speech workers.

Run: python tests/bench/bench_local_engine.py [--repeat N]
Prints wall seconds, audio seconds and audio-seconds-per-wall-second for each worker count, and the ratio of
2 workers to the 1-worker baseline measured in the same run (the machine is noisy; compare ratios).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def narrate(workers: int, inputs: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "run", str(inputs), "-o", out, "--provider", "local",
                        "--workers", str(workers), "-q"], check=True, cwd=REPO, capture_output=True)
        wall = time.perf_counter() - started
        audio = json.loads((Path(out) / "report.json").read_text())["totals"]["audio_seconds"]
    return wall, audio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--inputs", type=Path, default=REPO / "sample_inputs")
    args = parser.parse_args()
    best: dict[int, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for workers in (1, 2):
            wall, audio = narrate(workers, args.inputs)
            if workers not in best or wall < best[workers][0]:
                best[workers] = (wall, audio)
    for workers, (wall, audio) in best.items():
        print(f"workers={workers}: wall {wall:.2f} s (process start included), audio {audio:.1f} s, "
              f"real-time factor {audio / wall:.1f}x")
    print(f"speed-up 2 workers / 1 worker: {best[1][0] / best[2][0]:.2f}")


if __name__ == "__main__":
    main()
