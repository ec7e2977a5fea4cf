"""Benchmark: peak memory of the offline recogniser hearing a short and a long recording (flat in the length).

Run: python tests/bench/bench_listen_memory.py [--smoke] [--short-minutes 5] [--long-minutes 60]
Makes one unit of speech (the offline voice speaking a few sentences, then 5 s of silence), loops it with the
bundled ffmpeg into a 16 kHz mono WAV of each length in a temporary folder (60 minutes is 115 MB: never committed),
then hears each recording with pipeline.engine.listen.transcribe(path, word_timings=True) (the superset of what
`audiosum run` and align() ask for) in a fresh process; its peak RSS is the process's ru_maxrss from wait4.
The short recording is the same-run baseline for the long one.
Goals (issue 14): peak RSS <= 600 MB for both; the long recording's peak within +15 % of the short one's (memory
flat in the recording's length: Whisper hears 30 s windows of a streamed decode).
--smoke: 1 and 2 minutes (two windows against four or five); both goals still checked (the windows are the same size;
only their count differs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Goals, child_env, measure, parser

GOAL_PEAK_MB = 600.0
GOAL_FLAT = 1.15
UNIT = ["Good morning, this is the weekly update from the operations team.",
        "The new warehouse opened on Monday and the first deliveries left on time.",
        "Two drivers are still in training, so the evening route runs one van short until Friday.",
        "Please send questions about the rota to the office before the end of the week."]

_HEAR = r"""
import json, sys, time
from pathlib import Path
from pipeline.engine import listen
started = time.perf_counter()
listen._whisper()
load = time.perf_counter() - started
started = time.perf_counter()
heard = listen.transcribe(Path(sys.argv[1]), word_timings=True)
print(json.dumps({"duration_s": heard.duration_s, "words": len(heard.words), "utterances": len(heard.utterances),
                  "load_s": load, "hear_s": time.perf_counter() - started}))
"""


def make_recordings(folder: Path, minutes: list[float]) -> dict[float, Path]:
    """One unit of synthesised speech and silence, looped by ffmpeg to each length (16 kHz mono PCM WAV)."""
    from pipeline.audio import ffmpeg_exe
    from pipeline.engine import speech

    unit = folder / "unit.wav"
    (folder / "speech.wav").write_bytes(speech.speak(UNIT).wav)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(folder / "speech.wav"), "-af", "apad=pad_dur=5",
                    "-ar", "16000", "-ac", "1", str(unit)], check=True)
    made = {}
    for length in minutes:
        path = folder / f"loop-{length:g}min.wav"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(unit),
                        "-t", f"{length * 60:.0f}", "-c:a", "pcm_s16le", str(path)], check=True)
        made[length] = path
    return made


def main() -> int:
    args = parser(__doc__)
    args.add_argument("--short-minutes", type=float, default=5.0)
    args.add_argument("--long-minutes", type=float, default=60.0)
    options = args.parse_args()
    if options.smoke:
        options.short_minutes, options.long_minutes = 1.0, 2.0
    goals = Goals("bench_listen_memory", smoke=options.smoke)
    peaks: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        recordings = make_recordings(Path(scratch), [options.short_minutes, options.long_minutes])
        print(f"{'recording':<12}{'heard':>9}{'words':>7}{'wall':>8}{'speed':>8}{'cpu speed':>10}{'load':>7}"
              f"{'peak RSS':>10}")
        for length, path in recordings.items():
            run = measure([sys.executable, "-c", _HEAR, str(path)], child_env())
            if run.exit_code != 0:
                goals.true(f"{length:g}-minute recording heard", False, run.stderr_tail)
                continue
            heard = json.loads(run.stdout)
            peaks[length] = run.max_rss_mb
            print(f"{length:>5g} min   {heard['duration_s']:>8.1f}s{heard['words']:>7}{heard['hear_s']:>7.1f}s"
                  f"{heard['duration_s'] / heard['hear_s']:>7.1f}x{heard['duration_s'] / run.cpu_s:>9.1f}x"
                  f"{heard['load_s']:>6.1f}s{run.max_rss_mb:>8.0f}MB",
                  flush=True)
            goals.true(f"{length:g}-minute recording heard to its end with words",
                       abs(heard["duration_s"] - length * 60) < 1.0 and heard["words"] > 0)
            path.unlink()  # the long WAV is 115 MB: gone before the next one is heard
    print("peak RSS: the hearing process's ru_maxrss (wait4), model load included; speed: recording seconds / "
          "hearing wall seconds; cpu speed: recording seconds / the process's CPU seconds (load included), which a "
          "busy machine disturbs less")
    for length, peak in peaks.items():
        goals.check(f"peak RSS hearing {length:g} minutes", peak, "<=", GOAL_PEAK_MB, " MB", ".0f")
    if len(peaks) == 2:
        ratio = peaks[options.long_minutes] / peaks[options.short_minutes]
        goals.check(f"peak RSS {options.long_minutes:g} min / {options.short_minutes:g} min", ratio, "<=", GOAL_FLAT,
                    fmt=".3f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
