"""P3 memory: the client's peak RSS for a 10,000- and a 100,000-line manifest at --concurrency 64.

Run: python tests/bench/bench_p3_memory.py [--sizes 10000,100000]
Against a fast `serve --engine tone` with no rate limit; peak RSS is the client's own (wait4 ru_maxrss).
Goal: <= 150 MB and flat in N (the 10,000-line run is the baseline for the ratio).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import audiosum, child_env, measure, start_server, stop_server, write_manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    server = start_server("--engine", "tone", key=None)
    peaks: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            for size in sizes:
                manifest = write_manifest(Path(tmp) / f"m{size}.jsonl", size, words=40)
                out = Path(tmp) / f"out{size}"
                result = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--words", "20",
                                          "--concurrency", "64"), env)
                peaks[size] = result.max_rss_mb
                print(f"N={size:>7}: peak RSS {result.max_rss_mb:.1f} MB · wall {result.wall_s:.1f} s · "
                      f"exit {result.exit_code} · {result.stdout.strip()[:90]}")
                for path in out.glob("*.wav"):
                    path.unlink()  # keep the disk small between sizes
    finally:
        stop_server(server)
    base = peaks[sizes[0]]
    for size in sizes[1:]:
        print(f"peak RSS ratio N={size} / N={sizes[0]}: {peaks[size] / base:.2f} (flat = 1.0; goal <= 150 MB)")


if __name__ == "__main__":
    main()
