"""P2 overhead: client CPU seconds per document, the pipeline ÷ a bare loop doing the same requests.

Run: python tests/bench/bench_p2_overhead.py [--docs 2000] [--concurrency 16] [--repeat 2] [--smoke]
Both clients talk to the same `serve --engine tone` (no limits) in turn; CPU time is the child's own
(user + system, from wait4). Goal: pipeline / bare loop <= 1.5 (the bare loop is the same-run baseline); the ratio
to the bare loop with audiosum's temp+fdatasync+rename writes is shown alongside.
--smoke: 40 documents, one round. Interpreter start and imports are most of the CPU there, so the ratio means
nothing; it checks that the three clients finish and write every document, and that the figures are finite.
"""
# --captions off: this measures the API path's scheduling, pacing and memory; hearing each answer to time its
# captions is CPU work of its own, measured by bench_captions.py.


from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import Goals, audiosum, child_env, measure, parser, start_server, stop_server, write_manifest

HERE = Path(__file__).resolve().parent
GOAL = 1.5


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--docs", type=int, default=2000)
    args_parser.add_argument("--concurrency", type=int, default=16)
    args_parser.add_argument("--repeat", type=int, default=2)
    args = args_parser.parse_args()
    docs, repeat = (40, 1) if args.smoke else (args.docs, args.repeat)
    goals = Goals("bench_p2_overhead", args.smoke)
    server = start_server("--engine", "tone", key=None)
    best: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = write_manifest(Path(tmp) / "docs.jsonl", docs)
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            for round_ in range(repeat):
                for name, out, command in (
                    ("bare", f"bare{round_}", [sys.executable, str(HERE / "_bare_client.py"), str(manifest)]),
                    ("bare-durable", f"durable{round_}", [sys.executable, str(HERE / "_bare_client.py"),
                                                          str(manifest)]),
                    ("pipeline", f"pipe{round_}", audiosum("run", str(manifest), "-q", "--captions", "off", "--words", "30",
                                                           "--concurrency", str(args.concurrency))),
                ):
                    folder = Path(tmp) / out
                    if name == "pipeline":
                        command += ["-o", str(folder)]
                    else:
                        command += [str(folder), server.base_url, str(args.concurrency)]
                        command += ["durable"] if name == "bare-durable" else []
                    result = measure(command, env)
                    wavs = len(list(folder.glob("*.wav")))
                    if not goals.true(f"{name} round {round_ + 1}: exit 0 and {docs} WAVs",
                                      result.exit_code == 0 and wavs == docs,
                                      f"exit {result.exit_code}, {wavs} WAVs"
                                      + ("" if result.exit_code == 0 else f": {result.stderr_tail[-300:]}")):
                        return goals.finish()
                    best[name] = min(best.get(name, float("inf")), result.cpu_s / docs * 1000)
    finally:
        stop_server(server)
    for name, per_doc in best.items():
        print(f"{name:<13} {per_doc:.2f} CPU ms/doc (best of {repeat})")
    ratio, durable = best["pipeline"] / best["bare"], best["pipeline"] / best["bare-durable"]
    print(f"overhead ratio pipeline / bare loop with the same temp+fdatasync+rename writes: {durable:.2f}")
    if args.smoke:
        goals.skipped(f"pipeline / bare loop at {docs} documents (start-up CPU dominates; it was {ratio:.2f})")
        goals.finite("CPU ms/doc of bare, bare-durable, pipeline", *best.values())
    else:
        goals.check("overhead ratio pipeline / bare loop", ratio, "<=", GOAL, fmt=".2f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
