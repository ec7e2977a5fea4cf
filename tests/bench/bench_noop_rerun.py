"""P4: a finished 10,000-document job rerun with nothing changed: wall time and requests sent.

Run: python tests/bench/bench_noop_rerun.py [--docs 10000] [--smoke]
Both runs are real `audiosum run` processes (start-up included, as cron sees it) against the tone server; the first
(full) run of the same job is the same-run baseline.
Goals: the rerun sends 0 requests, skips every document and exits 0; rerun / first run <= 0.05 (issue 5's 2 s
against a first run of about 40 s on this machine, as a ratio).
--smoke: 40 documents. The time ratio means nothing there (start-up is most of both runs), so it checks the
0 requests, the skips and the exit codes, and that the times are finite.
"""
# --captions off: this measures the API path's scheduling, pacing and memory; hearing each answer to time its
# captions is CPU work of its own, measured by bench_captions.py.


from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _common import Goals, audiosum, child_env, measure, parser, start_server, stop_server

GOAL = 0.05


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--docs", type=int, default=10_000)
    args = args_parser.parse_args()
    docs = 40 if args.smoke else args.docs
    goals = Goals("bench_noop_rerun", args.smoke)
    server = start_server("--engine", "tone", key=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = Path(tmp) / "job.jsonl"
            with manifest.open("w") as handle:
                for i in range(docs):
                    handle.write(json.dumps({"id": f"doc-{i:05d}", "text": f"Item {i}. The council met on "
                                             f"day {i} and agreed to repair {i % 17} bridges. Work starts soon."})
                                 + "\n")
            out = Path(tmp) / "out"
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            first = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--captions", "off", "--words", "20",
                                     "--concurrency", "32"), env)
            requests_after_first = server.stats()["counts"]["requests"]
            print(f"first run:   {first.wall_s:.2f} s, exit {first.exit_code}, {requests_after_first} requests · "
                  f"{first.stdout.strip()}", flush=True)
            if not goals.true("first run exits 0", first.exit_code == 0,
                              "" if first.exit_code == 0 else first.stderr_tail[-300:]):
                return goals.finish()
            again = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--captions", "off", "--words", "20"), env)
            sent = server.stats()["counts"]["requests"] - requests_after_first
            report = json.loads((out / "report.json").read_text())["totals"]
            print(f"no-op rerun: {again.wall_s:.2f} s, exit {again.exit_code}, {sent} requests · "
                  f"{again.stdout.strip()}")
    finally:
        stop_server(server)
    goals.true("rerun exits 0", again.exit_code == 0, "" if again.exit_code == 0 else again.stderr_tail[-300:])
    goals.check("requests sent by the rerun", sent, "==", 0, fmt="d")
    goals.true("rerun skips every document", report.get("skipped") == docs,
               f"{report.get('skipped')} of {docs} skipped, {report.get('done')} done")
    ratio = again.wall_s / first.wall_s
    if args.smoke:
        goals.skipped(f"rerun / first run at {docs} documents (start-up dominates; it was {ratio:.2f})")
        goals.finite("first run and rerun seconds", first.wall_s, again.wall_s)
    else:
        goals.check("rerun / first run wall", ratio, "<=", GOAL, fmt=".3f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
