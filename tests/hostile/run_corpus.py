"""Run the hostile corpus as ONE audiosum run in its own process, deleting the victim file after the first result.

Its own process so the parent can measure its peak RSS alone; it writes a small JSON result and catches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pipeline.models import DocumentResult, RunSettings
from pipeline.runner import run


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not wait4's ru_maxrss: that keeps the high-water mark of the forked
    copy of the parent from before exec, so a big pytest process would be counted as the driver's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--victim", type=Path, required=True, help="deleted after the first result")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args()

    results: list[str] = []
    victim_existed: list[bool] = []

    def on_result(result: DocumentResult) -> None:
        results.append(result.doc_id)
        if len(results) == 1:
            # The folder was listed in one go when its first file was yielded; the victim is read only when
            # the worker pulls it later, so deleting it now makes it vanish between listing and reading.
            victim_existed.append(args.victim.exists())
            args.victim.unlink(missing_ok=True)

    settings = RunSettings(provider="openai", api_base=os.environ["OPENAI_BASE_URL"],
                           api_key=os.environ["OPENAI_API_KEY"], inputs=tuple(args.inputs), out_dir=args.out,
                           concurrency=1)
    outcome = run(settings, on_result=on_result)
    args.result.write_text(json.dumps({
        "exit_code": outcome.exit_code, "status": outcome.status, "totals": outcome.totals,
        "abort_reason": outcome.abort_reason, "first_result": results[0] if results else None,
        "victim_existed_at_first_result": victim_existed[0] if victim_existed else None,
        "results": len(results), "peak_rss_mb": peak_rss_mb(),
    }, indent=2, default=str))
    raise SystemExit(outcome.exit_code)


if __name__ == "__main__":
    main()
