"""Benchmark: preparing long recordings for the API (convert + split at pauses) and offline recognition speed.

Run: python tests/bench/bench_recordings.py [--minutes 60] [--listen-minutes 5]
Builds recordings by looping sample_inputs/voice-notes/website-launch.mp3, then, each step in its own process:
  decode    ffmpeg decoding the recording to PCM and throwing it away (the same-run baseline);
  prepare   recordings.prepare at the default 20 MB request limit (transcode to MP3, split at pauses);
  listen    PocketSphinx recognition of a shorter recording (the offline engine's first step).
Prints wall seconds, peak RSS (each process's own VmHWM), parts, and ratios to the decode baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VOICE_NOTE = REPO / "sample_inputs" / "voice-notes" / "website-launch.mp3"

_STEP = r"""
import json, sys, time
from pathlib import Path
step, path = sys.argv[1], Path(sys.argv[2])
started = time.perf_counter()
extra = {}
if step == "decode":
    from pipeline.audio import duration_of
    extra["seconds"] = duration_of(path)
elif step == "prepare":
    from pipeline.audio import recordings
    from pipeline.models import AudioSource
    plan = recordings.plan(AudioSource(path, path.suffix, path.stat().st_size), 20 * 1024 * 1024)
    parts = [plan.part(i) for i in range(len(plan.cuts))]
    extra["parts"] = len(parts)
    extra["part_seconds"] = [round(p.duration_s, 1) for p in parts]
    extra["part_mb"] = [round(len(p.data) / 2**20, 2) for p in parts]
elif step == "listen":
    from pipeline.engine import listen
    heard = listen.transcribe(path)
    extra["seconds"] = heard.duration_s
    extra["utterances"] = len(heard.utterances)
wall = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "peak_rss_mb": hwm / 1024, **extra}))
"""


def looped(minutes: float, folder: Path) -> Path:
    from pipeline.audio import ffmpeg_exe

    target = folder / f"loop-{minutes:g}min.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-stream_loop", "-1", "-i", str(VOICE_NOTE), "-t",
                    str(minutes * 60), "-c", "copy", str(target)], check=True)
    return target


def step(name: str, path: Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", _STEP, name, str(path)], check=True, capture_output=True,
                               text=True, cwd=REPO)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording to prepare")
    parser.add_argument("--listen-minutes", type=float, default=5.0, help="length of the recording to recognise")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        long_recording = looped(args.minutes, Path(scratch))
        short_recording = looped(args.listen_minutes, Path(scratch))
        size_mb = long_recording.stat().st_size / 2**20
        decode = step("decode", long_recording)
        prepare = step("prepare", long_recording)
        decode_short = step("decode", short_recording)
        heard = step("listen", short_recording)
    print(f"recording: {args.minutes:g} min MP3, {size_mb:.1f} MB (48 kbit/s); limit 20 MB per request")
    print(f"  decode (baseline)  {decode['wall_s']:7.2f} s  peak RSS {decode['peak_rss_mb']:6.0f} MB")
    print(f"  prepare            {prepare['wall_s']:7.2f} s  peak RSS {prepare['peak_rss_mb']:6.0f} MB  "
          f"{prepare['parts']} parts of {prepare['part_seconds']} s, {prepare['part_mb']} MB")
    print(f"  prepare / decode   {prepare['wall_s'] / decode['wall_s']:7.2f}x wall  "
          f"({decode['seconds'] / prepare['wall_s']:.0f}x real time)")
    print(f"recognition: {args.listen_minutes:g} min")
    print(f"  decode (baseline)  {decode_short['wall_s']:7.2f} s")
    print(f"  listen             {heard['wall_s']:7.2f} s  peak RSS {heard['peak_rss_mb']:6.0f} MB  "
          f"{heard['utterances']} utterances  {heard['seconds'] / heard['wall_s']:.1f}x real time  "
          f"({heard['wall_s'] / decode_short['wall_s']:.1f}x the decode)")


if __name__ == "__main__":
    main()
