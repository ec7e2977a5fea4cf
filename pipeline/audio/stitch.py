"""Joining spoken parts into one WAV with short pauses (pydub), and where each part starts.

Works on WAV bytes only (pydub reads WAV natively, no ffmpeg); never writes files.
"""

from __future__ import annotations

import io

from pipeline.audio import import_pydub

PAUSE_MS = 700


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
