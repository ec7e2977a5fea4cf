"""Durations, loudness and sizes of the offline narration of sample_inputs/ in each published format.

Run: python tests/bench/bench_publish_formats.py
For each format: per-document duration, measured integrated loudness (ffmpeg ebur128 on the written file),
size, and the run's wall time relative to the plain-WAV run (the baseline).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _common import REPO, audiosum, child_env, measure

from pipeline.audio import measure_loudness


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_wall = None
        for fmt in ("wav", "mp3", "opus", "flac"):
            out = Path(tmp) / fmt
            run = measure(audiosum("run", str(REPO / "sample_inputs"), "-o", str(out), "-q", "--provider", "local",
                                   "--format", fmt), child_env())
            base_wall = base_wall or run.wall_s
            report = json.loads((out / "report.json").read_text())
            total_bytes = total_s = 0.0
            print(f"--format {fmt}: wall {run.wall_s:.1f} s ({run.wall_s / base_wall:.2f}x the wav run)")
            for row in report["documents"]:
                sidecar = json.loads((out / row["sidecar_name"]).read_text())
                path = out / sidecar["audio_file"]
                size = path.stat().st_size
                total_bytes += size
                total_s += sidecar["duration_s"]
                print(f"  {row['doc_id']:<38} {sidecar['duration_s']:7.2f} s  {measure_loudness(path):6.1f} LUFS"
                      f"  {size / 1024:8.0f} KiB")
            print(f"  total {total_s:.1f} s, {total_bytes / 1024 / (total_s / 60):.0f} KiB per minute")


if __name__ == "__main__":
    main()
