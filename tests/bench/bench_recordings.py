"""Benchmark: preparing long recordings for the API (convert + split at pauses) and offline recognition speed.

Run: python tests/bench/bench_recordings.py [--minutes 60] [--listen-minutes 5] [--limit-mb 20] [--smoke]
Builds recordings by looping sample_inputs/voice-notes/website-launch.mp3, then, each step in its own process:
  decode    ffmpeg decoding the recording to PCM and throwing it away (the same-run baseline);
  prepare   recordings.split_recording at the request limit (20 MB by default), then every part made (MP3);
  listen    pipeline.engine.listen.transcribe of a shorter recording (the offline engine's first step: Whisper
            tiny.en from the bundled weights since issue 14; its accuracy, speed and memory have their own benches,
            bench_listen.py and bench_listen_memory.py).
Prints wall seconds, peak RSS (each process's own VmHWM), parts, and ratios to the decode baseline.
Goals: every part within the limit and the parts cover the recording end to end; prepare wall <= 12x the decode
(4.2x measured for issue 7 on a quiet machine, 7.9x with three other jobs on the two cores: prepare runs ffmpeg
and Python side by side, so it loses more than the decode when the cores are taken); prepare peak RSS <= 6x the
decode's (the scan is chunked and parts are made one at a time: 69 MB against 17 MB for 60 minutes, 127 MB before
the chunking); listen wall <= 200x the decode of the same short recording (110x measured for issue 7, with
the PocketSphinx recogniser of the time).
--smoke: a 6-minute recording at a 1 MB limit (so it is still converted and cut, into 3 parts) and 30 seconds
of recognition; every goal is still checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, Goals, child_env, parser

VOICE_NOTE = REPO / "sample_inputs" / "voice-notes" / "website-launch.mp3"
GOAL_PREPARE_WALL = 12.0
GOAL_PREPARE_RSS = 6.0
GOAL_LISTEN_WALL = 200.0

_STEP = r"""
import json, sys, time
from pathlib import Path
step, path, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
extra = {}
if step == "decode":
    from pipeline.audio import duration_of
    extra["seconds"] = duration_of(path)
elif step == "prepare":
    from pipeline.audio import recordings
    from pipeline.models import AudioSource
    split = recordings.split_recording(AudioSource(path, path.suffix, path.stat().st_size), limit)
    extra["seconds"] = split.duration_s
    extra["cuts"] = [list(cut) for cut in split.cuts]
    extra["part_seconds"], extra["part_bytes"] = [], []
    for i in range(len(split.cuts)):  # one at a time, as the provider does: a part is dropped before the next
        part = split.part(i)
        extra["part_seconds"].append(round(part.duration_s, 1))
        extra["part_bytes"].append(len(part.data))
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


def step(name: str, path: Path, limit: int) -> dict:
    completed = subprocess.run([sys.executable, "-c", _STEP, name, str(path), str(limit)], capture_output=True,
                               text=True, cwd=REPO, env=child_env())
    if completed.returncode != 0:
        raise SystemExit(f"step {name} exited {completed.returncode}: {completed.stderr[-1500:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording to prepare")
    args_parser.add_argument("--listen-minutes", type=float, default=5.0, help="length of the recording to recognise")
    args_parser.add_argument("--limit-mb", type=float, default=20.0, help="the request size limit")
    args = args_parser.parse_args()
    minutes, listen_minutes, limit_mb = (6.0, 0.5, 1.0) if args.smoke else (args.minutes, args.listen_minutes,
                                                                             args.limit_mb)
    limit = int(limit_mb * 2**20)
    goals = Goals("bench_recordings", args.smoke)
    with tempfile.TemporaryDirectory() as scratch:
        long_recording = looped(minutes, Path(scratch))
        short_recording = looped(listen_minutes, Path(scratch))
        size_mb = long_recording.stat().st_size / 2**20
        decode = step("decode", long_recording, limit)
        prepare = step("prepare", long_recording, limit)
        decode_short = step("decode", short_recording, limit)
        heard = step("listen", short_recording, limit)
    print(f"recording: {minutes:g} min MP3, {size_mb:.1f} MB (48 kbit/s); limit {limit_mb:g} MB per request")
    print(f"  decode (baseline)  {decode['wall_s']:7.2f} s  peak RSS {decode['peak_rss_mb']:6.0f} MB")
    print(f"  prepare            {prepare['wall_s']:7.2f} s  peak RSS {prepare['peak_rss_mb']:6.0f} MB  "
          f"{len(prepare['cuts'])} parts of {prepare['part_seconds']} s, "
          f"{[round(b / 2**20, 2) for b in prepare['part_bytes']]} MB")
    print(f"  prepare / decode   {prepare['wall_s'] / decode['wall_s']:7.2f}x wall  "
          f"({decode['seconds'] / prepare['wall_s']:.0f}x real time)")
    print(f"recognition: {listen_minutes:g} min")
    print(f"  decode (baseline)  {decode_short['wall_s']:7.2f} s")
    print(f"  listen             {heard['wall_s']:7.2f} s  peak RSS {heard['peak_rss_mb']:6.0f} MB  "
          f"{heard['utterances']} utterances  {heard['seconds'] / heard['wall_s']:.1f}x real time")
    cuts = prepare["cuts"]
    joined = all(abs(a[1] - b[0]) < 1e-6 for a, b in zip(cuts, cuts[1:], strict=False))
    goals.true("the parts cover the recording end to end",
               joined and cuts[0][0] == 0 and abs(cuts[-1][1] - decode["seconds"]) < 0.5 and len(cuts) > 1,
               f"{len(cuts)} parts, {cuts[0][0]}-{cuts[-1][1]} s of {decode['seconds']:.1f} s")
    goals.check("largest part / limit", max(prepare["part_bytes"]) / limit, "<=", 1.0, fmt=".2f")
    goals.check("prepare wall / decode wall", prepare["wall_s"] / decode["wall_s"], "<=", GOAL_PREPARE_WALL,
                fmt=".2f")
    goals.check("prepare peak RSS / decode peak RSS", prepare["peak_rss_mb"] / decode["peak_rss_mb"], "<=",
                GOAL_PREPARE_RSS, fmt=".2f")
    goals.check("listen wall / decode wall (short recording)", heard["wall_s"] / decode_short["wall_s"], "<=",
                GOAL_LISTEN_WALL, fmt=".0f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
