"""Durations, loudness, sizes and run time of the offline narration of sample_inputs/ in each published format.

Run: python tests/bench/bench_publish_formats.py [--formats wav,mp3,opus,flac] [--smoke]
Narrates sample_inputs/ without its recording with `--provider local` once per --format; the plain-WAV run is the
same-run baseline. Durations and loudness are measured without pipeline.audio (tests/oracles.py: the ffmpeg binary
decodes, pyloudnorm meters), so the meter that set the level is not the one that checks it.
Goals, per document and format: decoded length within 50 ms of the duration its sidecar states (README: mp3's
padding is fixed so the decoded length is exact; Piper's lengths vary from run to run, so runs are not compared
with each other); integrated loudness within 0.5 LU of -16 LUFS for mp3/opus/flac (README: the default
target, "in practice within 0.2 LU"; 0.5 leaves room for a second meter); each run's wall <= 1.5x the WAV run's.
--smoke: one short note, wav and mp3: every goal is still checked.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import REPO, Goals, audiosum, child_env, measure, parser
from oracles import RATE, decoded_samples, integrated_lufs

TARGET_LUFS = -16.0
GOAL_LU = 0.5
GOAL_LENGTH_MS = 50.0
GOAL_WALL = 1.5
README_KIB_PER_MIN = {"wav": 2560, "mp3": 470, "opus": 243, "flac": 1434}
SMOKE_DOCUMENT = REPO / "sample_inputs" / "notes" / "short-reminder.txt"


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--formats", default="wav,mp3,opus,flac", help="wav first: it is the baseline")
    args = args_parser.parse_args()
    formats = ["wav", "mp3"] if args.smoke else ["wav", *(f for f in args.formats.split(",") if f != "wav")]
    goals = Goals("bench_publish_formats", args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        if args.smoke:
            inputs.mkdir()
            shutil.copy(SMOKE_DOCUMENT, inputs)
        else:
            shutil.copytree(REPO / "sample_inputs", inputs, ignore=shutil.ignore_patterns("voice-notes"))
        base_wall = 0.0
        for fmt in formats:
            out = Path(tmp) / fmt
            run = measure(audiosum("run", str(inputs), "-o", str(out), "-q", "--provider", "local", "--format", fmt),
                          child_env())
            if not goals.true(f"--format {fmt}: exit 0", run.exit_code == 0,
                              "" if run.exit_code == 0 else run.stderr_tail[-300:]):
                continue
            base_wall = base_wall or run.wall_s
            report = json.loads((out / "report.json").read_text())
            total_bytes = total_s = 0.0
            print(f"--format {fmt}: wall {run.wall_s:.1f} s", flush=True)
            worst_length = worst_lu = 0.0
            for row in report["documents"]:
                sidecar = json.loads((out / row["sidecar_name"]).read_text())
                data = (out / sidecar["audio_file"]).read_bytes()
                length = len(decoded_samples(data)) / RATE
                lufs = integrated_lufs(data)
                off_ms = abs(length - sidecar["duration_s"]) * 1000
                worst_length = max(worst_length, off_ms)
                if fmt != "wav":
                    worst_lu = max(worst_lu, abs(lufs - TARGET_LUFS))
                total_bytes += len(data)
                total_s += length
                print(f"  {row['doc_id']:<38} {length:7.3f} s ({off_ms:4.1f} ms off the sidecar)  {lufs:6.1f} LUFS  "
                      f"{len(data) / 1024:8.0f} KiB")
            print(f"  total {total_s:.1f} s, {total_bytes / 1024 / (total_s / 60):.0f} KiB per minute "
                  f"(README: roughly {README_KIB_PER_MIN.get(fmt, '?')})")
            goals.check(f"{fmt}: worst decoded length off the sidecar's duration", worst_length, "<=",
                        GOAL_LENGTH_MS, " ms", fmt=".1f")
            if fmt != "wav":
                goals.check(f"{fmt}: worst |loudness - {TARGET_LUFS:g} LUFS|", worst_lu, "<=", GOAL_LU, " LU",
                            fmt=".2f")
                goals.check(f"{fmt}: run wall / wav run wall", run.wall_s / base_wall, "<=", GOAL_WALL, fmt=".2f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
