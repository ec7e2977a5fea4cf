"""P1 makespan: 500 documents against `serve --rpm 600 --latency 0.2-1.5 --engine tone`.

Run: python tests/bench/bench_p1_makespan.py [--docs 500] [--rpm 600]
Prints makespan ÷ ideal (docs ÷ rate) with the limit given (--rpm) and learned from headers only, and the
429s the client saw. Goals: <= 1.03 given (0 client-visible 429s), <= 1.10 learned.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import audiosum, child_env, measure, start_server, stop_server, write_manifest


def one(label: str, docs: int, rpm: int, client_args: list[str], tmp: Path) -> None:
    server = start_server("--engine", "tone", "--rpm", str(rpm), "--latency", "0.2-1.5", "--seed", "1", key=None)
    try:
        manifest = write_manifest(tmp / f"{label}.jsonl", docs)
        out = tmp / f"out-{label}"
        env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
        result = measure(audiosum("run", str(manifest), "-o", str(out), "-q", "--words", "30", *client_args), env)
        report = json.loads((out / "report.json").read_text())
        makespan = report["totals"]["wall_seconds"]
        ideal = docs / (rpm / 60)
        counts = server.stats()["counts"]
        print(f"{label:<8} docs {docs} done {report['totals']['done']} · makespan {makespan:.2f} s "
              f"(process {result.wall_s:.2f} s) · ideal {ideal:.2f} s · ratio {makespan / ideal:.3f} · "
              f"429s seen by client {counts.get('rate_limited', 0)} · requests {counts['requests']}")
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--rpm", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one("given", args.docs, args.rpm, ["--rpm", str(args.rpm)], Path(tmp))
        one("learned", args.docs, args.rpm, ["--concurrency", "32"], Path(tmp))


if __name__ == "__main__":
    main()
