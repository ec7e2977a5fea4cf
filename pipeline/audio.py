"""Audio checks and conversions: is this a WAV that parses, how long is it.

Never writes files (outputs.py does) and never talks to the network.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass


class InvalidAudio(ValueError):
    """Bytes that are not a playable PCM WAV."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def wav_info(data: bytes) -> WavInfo:
    """Parse a WAV fully; frames are counted from the data really present, not the header's claim."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            payload = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise InvalidAudio(f"not a parseable WAV: {exc or type(exc).__name__}") from None
    if rate <= 0 or channels <= 0 or width <= 0:
        raise InvalidAudio("WAV header has a zero rate, channel count or sample width")
    frames = len(payload) // (channels * width)
    if frames == 0:
        raise InvalidAudio("WAV holds no audio frames")
    return WavInfo(sample_rate=rate, channels=channels, sample_width=width, frames=frames)
