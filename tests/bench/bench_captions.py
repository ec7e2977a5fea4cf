"""Benchmark: caption times aligned from the audio (pipeline.engine.align) against the times known from synthesis.

Run: python tests/bench/bench_captions.py [--smoke] [--words 120]
The offline engine summarises and speaks every text of sample_inputs/ (narrate.narrate, in this process), so each
sentence's start is known from synthesis (Narration.cues). Each WAV is then treated as API audio: only its
transcript is given to align.align(wav, transcript), which splits it into sentences itself (split_sentences) and
times them from Whisper's word timestamps. Error = |aligned start - synthesised start| at every boundary between
two sentences (the first start is 0 on both sides, the last end is the duration on both sides: neither is counted).
Same-run baseline: today's estimate for API audio (sentence length in proportion to the duration,
align.estimated_cues; given the narration's own sentences, which is kinder to it than podcast.py's split on stops).
When split_sentences cuts a transcript differently from the narration, its boundaries are compared through
align.regroup (the same word times grouped into the narration's sentences) and the bench says how many.
Goals (issue 14): aligned boundary error median <= 0.25 s and 95th percentile <= 0.6 s; every transcript aligned
(none fell back to the estimate); the aligned median below the estimate's.
--smoke: one short text (notes/short-reminder.txt); the figures must be finite and it must align; the percentile
goals are not checked on a handful of boundaries.
"""

from __future__ import annotations

import statistics
import sys
import time

from _common import REPO, Goals, parser

GOAL_MEDIAN_S = 0.25
GOAL_P95_S = 0.6
SMOKE_INPUT = "notes/short-reminder.txt"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (no interpolation): the value that `share` of the values are at or below."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(share * len(ordered) + 0.5)) - 1))]


def main() -> int:
    args = parser(__doc__)
    args.add_argument("--words", type=int, default=120, help="summary length asked of the offline engine")
    options = args.parse_args()
    goals = Goals("bench_captions", smoke=options.smoke)
    from pipeline.engine import align, listen, narrate

    texts = sorted(p for p in (REPO / "sample_inputs").rglob("*") if p.suffix in (".txt", ".md"))
    if options.smoke:
        texts = [REPO / "sample_inputs" / SMOKE_INPUT]
    started = time.perf_counter()
    listen._whisper()  # the model's load, paid once per worker process, is kept out of the alignment time
    load_s = time.perf_counter() - started
    aligned_errors: list[float] = []
    estimate_errors: list[float] = []
    audio_s = synth_s = align_s = 0.0
    regrouped = fell_back = 0
    print(f"{'text':<44}{'audio':>7}{'sents':>6}{'matched':>8}{'median':>8}{'max':>7}{'est. median':>12}")
    for path in texts:
        started = time.perf_counter()
        spoken = narrate.narrate(path.read_text(), options.words, path.stem.replace("-", " "))
        synth_s += time.perf_counter() - started
        known = spoken.cues()
        duration = spoken.audio.duration_s
        audio_s += duration
        started = time.perf_counter()
        result = align.align(spoken.audio.wav, spoken.transcript)  # as for API audio: the transcript only
        align_s += time.perf_counter() - started
        if result.method != "aligned":
            fell_back += 1
            print(f"{path.relative_to(REPO / 'sample_inputs')!s:<44} fell back to the estimate: {result.reason}")
            continue
        cues = result.sentence_cues
        if [text for _, _, text in cues] != [text for _, _, text in known]:
            regrouped += 1
            cues = align.regroup(result, spoken.sentences)
        estimate = align.estimated_cues(spoken.sentences, duration)
        errors = [abs(a[0] - k[0]) for a, k in zip(cues[1:], known[1:])]
        estimated = [abs(e[0] - k[0]) for e, k in zip(estimate[1:], known[1:])]
        goals.true(f"{path.name}: one aligned cue per sentence", len(cues) == len(known), f"{len(cues)} cues")
        aligned_errors += errors
        estimate_errors += estimated
        print(f"{path.relative_to(REPO / 'sample_inputs')!s:<44}{duration:>6.1f}s{len(known):>6}{result.matched:>8.0%}"
              f"{statistics.median(errors) if errors else 0:>7.2f}s{max(errors, default=0):>6.2f}s"
              f"{statistics.median(estimated) if estimated else 0:>11.2f}s", flush=True)
    print(f"{len(texts)} texts, {audio_s:.1f} s of speech (synthesis {synth_s:.1f} s); alignment {align_s:.1f} s "
          f"({audio_s / align_s if align_s else 0:.1f}x real time, model load {load_s:.1f} s apart); "
          f"{len(aligned_errors)} boundaries; {regrouped} transcripts split differently by split_sentences and "
          f"compared through regroup; {fell_back} fell back to the estimate")
    goals.true("every transcript aligned (none fell back)", fell_back == 0, f"{fell_back} fell back")
    if not aligned_errors:
        goals.true("boundaries to compare", False, "none")
        return goals.finish()
    median, p95 = statistics.median(aligned_errors), percentile(aligned_errors, 0.95)
    est_median, est_p95 = statistics.median(estimate_errors), percentile(estimate_errors, 0.95)
    print(f"{'boundary error':<16}{'median':>8}{'p95':>8}{'max':>8}")
    print(f"{'aligned':<16}{median:>7.3f}s{p95:>7.3f}s{max(aligned_errors):>7.3f}s")
    print(f"{'estimated':<16}{est_median:>7.3f}s{est_p95:>7.3f}s{max(estimate_errors):>7.3f}s  (today's API captions)")
    if options.smoke:
        goals.finite("aligned and estimated boundary errors", median, p95, est_median, est_p95)
        goals.skipped("the median and p95 goals need the whole sample set, not a handful of boundaries")
        return goals.finish()
    goals.check("aligned boundary error, median", median, "<=", GOAL_MEDIAN_S, " s", ".3f")
    goals.check("aligned boundary error, p95", p95, "<=", GOAL_P95_S, " s", ".3f")
    goals.check("aligned median - estimated median", median - est_median, "<=", 0.0, " s", ".3f")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
