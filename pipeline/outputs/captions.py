"""Caption times for a spoken summary, decided once before its files are written (the sidecar's `cues`, the VTT's).

The offline voice knows when each sentence starts (`synthesis`). The API sends audio and a transcript with no timing:
its audio is heard by the bundled recogniser and the transcript aligned to the words heard (`aligned`, see
pipeline.engine.align); where that fails, or with --captions off, cues are estimated from sentence length
(`estimated`, with the reason). Hearing is CPU work: it runs where the run's executor runs its steps (one dedicated
thread of this process, one summary at a time, or the Ray pool), never on the event loop.
"""

from __future__ import annotations

import dataclasses
import functools

from pipeline.engine import align
from pipeline.errors import DocumentError
from pipeline.executors import Executor
from pipeline.models import RunSettings, SpokenSummary

Cue = tuple[float, float, str]


async def timed_cues(summary: SpokenSummary, settings: RunSettings, executor: Executor) -> SpokenSummary:
    """The summary with cues, their method and (for --captions word) word cues."""
    if settings.output == "text" or not summary.wav:
        return summary
    if summary.cues:  # the offline voice's own sentence times
        words = word_cues_within(summary.cues) if settings.captions == "word" else ()
        return dataclasses.replace(summary, cues_method="synthesis", word_cues=words)
    if settings.captions == "off":
        return dataclasses.replace(summary, cues_method="estimated", cues_reason="--captions off: not heard")
    suffix = f".{summary.audio_format}"
    try:
        found = await executor.hear(functools.partial(align.align, language=settings.language, suffix=suffix),
                                 summary.wav, summary.transcript)
    except DocumentError as exc:  # the audio does not decode: publishing it will say so; no cues to give
        return dataclasses.replace(summary, cues_method="estimated", cues_reason=f"not heard: {exc}")
    words = found.word_cues if settings.captions == "word" else ()
    return dataclasses.replace(summary, cues=found.sentence_cues, cues_method=found.method,
                               cues_reason=found.reason, word_cues=words)


def word_cues_within(sentences: tuple[Cue, ...]) -> tuple[Cue, ...]:
    """Word cues inside known sentence times, each word's share of its sentence in proportion to its length."""
    return tuple((round(start + a, 3), round(start + b, 3), word) for start, end, text in sentences
                 for a, b, word in align.estimated_cues(text.split(), end - start))
