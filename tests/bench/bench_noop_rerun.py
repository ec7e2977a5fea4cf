"""P4: a finished 10,000-document job rerun with nothing changed: wall time and requests sent.

Run: python tests/bench/bench_noop_rerun.py [--docs 10000]
Baseline printed alongside: the first (full) run of the same job against the tone server.
Goal: the rerun takes <= 2 s and sends 0 requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import child_env, run_cli, start_server, stop_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10_000)
    args = parser.parse_args()
    server = start_server("--engine", "tone", key=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = Path(tmp) / "job.jsonl"
            with manifest.open("w") as handle:
                for i in range(args.docs):
                    handle.write(json.dumps({"id": f"doc-{i:05d}", "text": f"Item {i}. The council met on "
                                             f"day {i} and agreed to repair {i % 17} bridges. Work starts soon."})
                                 + "\n")
            out = Path(tmp) / "out"
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            started = time.perf_counter()
            first = run_cli("run", str(manifest), "-o", str(out), "-q", "--words", "20", "--concurrency", "32",
                            env=env, timeout_s=3600)
            first_wall = time.perf_counter() - started
            requests_after_first = server.stats()["counts"]["requests"]
            started = time.perf_counter()
            again = run_cli("run", str(manifest), "-o", str(out), "-q", "--words", "20", env=env, timeout_s=600)
            rerun_wall = time.perf_counter() - started
            sent = server.stats()["counts"]["requests"] - requests_after_first
            print(f"first run:  {first_wall:.2f} s, exit {first.exit_code}, {requests_after_first} requests")
            print(f"no-op rerun: {rerun_wall:.2f} s, exit {again.exit_code}, {sent} requests "
                  f"(goal <= 2 s and 0) · {again.stdout.strip()}")
            print(f"ratio rerun / first run: {rerun_wall / first_wall:.3f}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
