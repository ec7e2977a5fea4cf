"""WAV in memory: mono PCM wrapped in a WAV, a WAV parsed to its format and whole frames, its RIFF chunks walked.

Reads and writes bytes only: never runs ffmpeg (decode.py does), never opens a file.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.errors import InvalidAudio


@dataclass(frozen=True, slots=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def pcm16_to_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Mono 16-bit little-endian samples in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def wav_info(data: bytes) -> WavInfo:
    """Parse a WAV fully; frames are counted from the data really present, not the header's claim."""
    return wav_frames(data)[0]


def wav_frames(data: bytes) -> tuple[WavInfo, bytes]:
    """wav_info, and the samples of its whole frames (what a WAV rewritten with nothing else would hold)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
            payload = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise InvalidAudio(f"not a parseable WAV: {exc or type(exc).__name__}") from exc
    if rate <= 0 or channels <= 0 or width <= 0:
        raise InvalidAudio("WAV header has a zero rate, channel count or sample width")
    frames = len(payload) // (channels * width)
    if frames == 0:
        raise InvalidAudio("WAV holds no audio frames")
    info = WavInfo(sample_rate=rate, channels=channels, sample_width=width, frames=frames)
    return info, payload[:frames * channels * width]


def riff_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(name, declared size, offset of its body) of each RIFF chunk whose 8-byte header lies within data, in
    order from the first after 'RIFF....WAVE'; the declared sizes are not checked against what is there."""
    position = 12
    while len(data) >= position + 8:
        size = int.from_bytes(data[position + 4:position + 8], "little")
        yield data[position:position + 4], size, position + 8
        position += 8 + size + (size & 1)
