"""P3 memory: the client's peak RSS for a 10,000- and a 100,000-line manifest at --concurrency 64.

Run: python tests/bench/bench_p3_memory.py [--sizes 10000,100000] [--smoke]
Against a fast `serve --engine tone` with no rate limit; peak RSS is the client's own (wait4 ru_maxrss).
Goal: flat in N — peak RSS at the largest N / peak RSS at the smallest N (the same-run baseline) <= 1.15, and every
document done. (Issue 4 also named 150 MB; README promises no absolute figure, so it is printed, not checked.)
--smoke: 40 and 300 lines at --concurrency 8 (both sizes fill every slot, as 10,000 does 64). The ratio is still
checked: anything kept per document (an answer's audio is ~0.4 MB) would show over 260 documents, though a leak of
a few hundred bytes a document needs the full sizes.
"""
# --captions off: this measures the API path's scheduling, pacing and memory; hearing each answer to time its
# captions is CPU work of its own, measured by bench_captions.py.


from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _common import Goals, audiosum, child_env, measure, parser, start_server, stop_server, write_manifest

GOAL = 1.15
SHOWN_MB = 150


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--sizes", default="10000,100000")
    args = args_parser.parse_args()
    sizes = [40, 300] if args.smoke else [int(n) for n in args.sizes.split(",")]
    concurrency = "8" if args.smoke else "64"
    goals = Goals("bench_p3_memory", args.smoke)
    server = start_server("--engine", "tone", key=None)
    peaks: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            for size in sizes:
                manifest = write_manifest(Path(tmp) / f"m{size}.jsonl", size, words=40)
                out = Path(tmp) / f"out{size}"
                result = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--captions", "off", "--words", "20",
                                          "--concurrency", concurrency), env)
                done = json.loads((out / "report.json").read_text())["totals"]["done"] if result.exit_code == 0 \
                    else 0
                peaks[size] = result.max_rss_mb
                print(f"N={size:>7}: peak RSS {result.max_rss_mb:.1f} MB (issue 4's {SHOWN_MB} MB shown only) · "
                      f"wall {result.wall_s:.1f} s · exit {result.exit_code} · {result.stdout.strip()[:90]}",
                      flush=True)
                goals.true(f"N={size}: exit 0, every document done", result.exit_code == 0 and done == size,
                           f"{done} of {size}" + ("" if result.exit_code == 0 else f": {result.stderr_tail[-300:]}"))
                for path in out.glob("*.wav"):
                    path.unlink()  # keep the disk small between sizes
    finally:
        stop_server(server)
    base = peaks[sizes[0]]
    for size in sizes[1:]:
        goals.check(f"peak RSS N={size} / N={sizes[0]} (flat = 1.0)", peaks[size] / base, "<=", GOAL, fmt=".2f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
