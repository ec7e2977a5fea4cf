"""P1 makespan: 500 documents against `serve --rpm 600 --latency 0.2-1.5 --engine tone`.

Run: python tests/bench/bench_p1_makespan.py [--docs 500] [--rpm 600] [--smoke]
Prints makespan ÷ ideal (docs ÷ rate, the rate the server enforces in the same run) with the limit given (--rpm)
and learned from headers only, and the 429s the client saw.
Goals: <= 1.03 given with 0 client-visible 429s, <= 1.10 learned, every document done.
--smoke: 20 documents. The makespan ratio means nothing there (the one-second burst and the 1.5 s latency tail
are most of the run), so it checks that both runs finish every document and that the given limit sends no 429.
"""
# --captions off: this measures the API path's scheduling, pacing and memory; hearing each answer to time its
# captions is CPU work of its own, measured by bench_captions.py.


from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _common import Goals, audiosum, child_env, measure, parser, start_server, stop_server, write_manifest

GOALS = {"given": 1.03, "learned": 1.10}


def one(label: str, docs: int, rpm: int, client_args: list[str], tmp: Path, goals: Goals) -> None:
    server = start_server("--engine", "tone", "--rpm", str(rpm), "--latency", "0.2-1.5", "--seed", "1", key=None)
    try:
        manifest = write_manifest(tmp / f"{label}.jsonl", docs)
        out = tmp / f"out-{label}"
        env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
        result = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--captions", "off", "--words", "30", *client_args), env)
        counts = server.stats()["counts"]
    finally:
        stop_server(server)
    if not goals.true(f"{label}: the run exits 0", result.exit_code == 0,
                      "" if result.exit_code == 0 else f"exit {result.exit_code}: {result.stderr_tail[-300:]}"):
        return
    report = json.loads((out / "report.json").read_text())
    makespan = report["totals"]["wall_seconds"]
    ideal = docs / (rpm / 60)
    refused = counts.get("rate_limited", 0)
    print(f"{label:<8} docs {docs} done {report['totals']['done']} · makespan {makespan:.2f} s "
          f"(process {result.wall_s:.2f} s) · ideal {ideal:.2f} s · ratio {makespan / ideal:.3f} · "
          f"429s seen by client {refused} · requests {counts['requests']}", flush=True)
    goals.true(f"{label}: every document done", report["totals"]["done"] == docs,
               f"{report['totals']['done']} of {docs}")
    if label == "given":
        goals.check("given: 429s seen by the client", refused, "==", 0, fmt="d")
    if goals.smoke:
        goals.finite(f"{label}: makespan, ideal", makespan, ideal)
    else:
        goals.check(f"{label}: makespan / ideal", makespan / ideal, "<=", GOALS[label], fmt=".3f")


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--docs", type=int, default=500)
    args_parser.add_argument("--rpm", type=int, default=600)
    args = args_parser.parse_args()
    docs = 20 if args.smoke else args.docs
    goals = Goals("bench_p1_makespan", args.smoke)
    if args.smoke:
        goals.skipped("makespan / ideal at 20 documents (burst and latency tail dominate)")
    with tempfile.TemporaryDirectory() as tmp:
        one("given", docs, args.rpm, ["--rpm", str(args.rpm)], Path(tmp), goals)
        one("learned", docs, args.rpm, ["--concurrency", "32"], Path(tmp), goals)
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
