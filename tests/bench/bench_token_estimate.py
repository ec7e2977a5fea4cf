"""How far the client's token estimate is from the `usage` the server reports, document by document.

Run: python tests/bench/bench_token_estimate.py [--engine tone|local]
Sends sample_inputs/ through `audiosum serve` and compares, for each document, the raw estimate (before any
calibration) and the estimate after calibrating on the earlier documents, with the server's total_tokens.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import REPO, audiosum, child_env, measure, start_server, stop_server

from pipeline.models import RunSettings
from pipeline.providers.openai import build_request_body
from pipeline.providers.openai.ratelimit import TokenEstimator
from pipeline.sources import iter_inputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="tone")
    args = parser.parse_args()
    server = start_server("--engine", args.engine, key=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-bench")
            measure(audiosum("run", str(REPO / "sample_inputs"), "-o", str(out), "-q", "--concurrency", "1"), env)
            settings = RunSettings(inputs=(str(REPO / "sample_inputs"),), out_dir=out, provider="openai")
            estimator = TokenEstimator()
            print(f"{'document':<40} {'usage':>7} {'raw est':>8} {'raw err':>8} {'calibrated err':>15}")
            raw_errors, calibrated_errors = [], []
            for document in iter_inputs(settings.inputs):
                usage = json.loads((out / f"{document.id}.json").read_text())["usage"]["total_tokens"]
                calibrated, raw = estimator.estimate(build_request_body(document, settings)["messages"],
                                                     settings.words)
                raw_errors.append(raw / usage - 1)
                calibrated_errors.append(calibrated / usage - 1)
                print(f"{document.id:<40} {usage:>7} {raw:>8} {raw / usage - 1:>+8.1%} {calibrated / usage - 1:>+15.1%}")
                estimator.observe(raw, usage)
            mean_abs = sum(abs(e) for e in raw_errors) / len(raw_errors)
            later = calibrated_errors[1:]
            print(f"mean |error|: raw {mean_abs:.1%}; calibrated (from the 2nd document on) "
                  f"{sum(abs(e) for e in later) / len(later):.1%}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
