"""P2 overhead: client CPU seconds per document, the pipeline ÷ a bare loop doing the same requests.

Run: python tests/bench/bench_p2_overhead.py [--docs 2000] [--concurrency 16]
Both clients talk to the same `serve --engine tone` (no limits) in turn; CPU time is the child's own
(user + system, from wait4). Goal: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import audiosum, child_env, measure, start_server, stop_server, write_manifest

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    server = start_server("--engine", "tone", key=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = write_manifest(Path(tmp) / "docs.jsonl", args.docs)
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            best: dict[str, float] = {}
            for round_ in range(args.repeat):
                for name, command in (
                    ("bare", [sys.executable, str(HERE / "_bare_client.py"), str(manifest),
                              str(Path(tmp) / f"bare{round_}"), server.base_url, str(args.concurrency)]),
                    ("bare-durable", [sys.executable, str(HERE / "_bare_client.py"), str(manifest),
                                      str(Path(tmp) / f"durable{round_}"), server.base_url, str(args.concurrency),
                                      "durable"]),
                    ("pipeline", audiosum("run", str(manifest), "-o", str(Path(tmp) / f"pipe{round_}"), "-q",
                                          "--words", "30", "--concurrency", str(args.concurrency))),
                ):
                    result = measure(command, env)
                    assert result.exit_code == 0, (name, result.stdout)
                    best[name] = min(best.get(name, float("inf")), result.cpu_s / args.docs * 1000)
            for name, per_doc in best.items():
                print(f"{name:<13} {per_doc:.2f} CPU ms/doc (best of {args.repeat})")
            print(f"overhead ratio pipeline / bare loop: {best['pipeline'] / best['bare']:.2f} (goal <= 1.5)")
            print(f"overhead ratio pipeline / bare loop with the same temp+fdatasync+rename writes: "
                  f"{best['pipeline'] / best['bare-durable']:.2f}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
