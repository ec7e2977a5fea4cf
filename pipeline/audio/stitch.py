"""Joining spoken parts into one WAV with short pauses (pydub), and where each part starts; N answers into one.

Works on WAV bytes only (pydub reads WAV natively, no ffmpeg); never writes files.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.audio import import_pydub, wav_info
from pipeline.models import SpokenSummary, merged_steps, total_usage

PAUSE_MS = 700


@dataclass(frozen=True, slots=True)
class StitchedAudio:
    """Parts joined into one WAV: its bytes, the second each part starts at, and the WAV's rate and length."""

    wav: bytes
    starts: tuple[float, ...]
    sample_rate: int
    duration_s: float


def stitch_audio(parts: Sequence[bytes], pause_ms: int = PAUSE_MS) -> StitchedAudio:
    """stitch(), with the joined WAV measured."""
    wav, starts = stitch(list(parts), pause_ms)
    info = wav_info(wav)
    return StitchedAudio(wav=wav, starts=tuple(starts), sample_rate=info.sample_rate, duration_s=info.duration_s)


def join_answers(answers: Sequence[SpokenSummary], *, separator: str, spoken: bool = True,
                 chapter_labels: Sequence[str] = ()) -> SpokenSummary:
    """N answers (parts of one document) as one: their audio stitched (none when not spoken), transcripts joined
    with separator, attempts and usage added up, parts = N, and a chapter at each part's start when labels are
    given; every other field is the first answer's."""
    joined = stitch_audio([a.wav for a in answers]) if spoken else StitchedAudio(b"", (), 0, 0.0)
    return dataclasses.replace(
        answers[0], wav=joined.wav, transcript=separator.join(a.transcript for a in answers),
        duration_s=joined.duration_s, sample_rate=joined.sample_rate,
        attempts=tuple(x for a in answers for x in a.attempts), usage=total_usage([a.usage for a in answers]),
        parts=len(answers), steps=merged_steps(step for a in answers for step in a.steps),
        chapters=tuple(zip(joined.starts, chapter_labels)) if chapter_labels else answers[0].chapters)


def stitch(parts: list[bytes], pause_ms: int = PAUSE_MS) -> tuple[bytes, list[float]]:
    """(one WAV, start second of each part); parts are brought to the first part's rate and channels."""
    if not parts:
        raise ValueError("nothing to stitch")
    AudioSegment = import_pydub().AudioSegment
    segments = [AudioSegment.from_wav(io.BytesIO(data)) for data in parts]
    first = segments[0]
    rate, channels, width = first.frame_rate, first.channels, first.sample_width
    pause = AudioSegment.silent(duration=pause_ms, frame_rate=rate).set_channels(channels).set_sample_width(width)
    # Collect the raw frames and join them once: `joined += segment` copies everything so far each time, which
    # is quadratic in the number of parts (a long narration has dozens).
    chunks: list[bytes] = []
    frames = 0
    starts: list[float] = []
    for index, segment in enumerate(segments):
        if index:
            chunks.append(pause.raw_data)
            frames += int(pause.frame_count())
        starts.append(round(frames / rate, 3))
        same = segment.set_frame_rate(rate).set_channels(channels).set_sample_width(width)
        chunks.append(same.raw_data)
        frames += int(same.frame_count())
    joined = AudioSegment(data=b"".join(chunks), sample_width=width, frame_rate=rate, channels=channels)
    buffer = io.BytesIO()
    joined.export(buffer, format="wav")
    return buffer.getvalue(), starts
