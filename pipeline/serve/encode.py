"""Speech as the bytes `POST /v1/audio/speech` answers with: a WAV re-timed and resampled to 24 kHz mono, then encoded
by the bundled ffmpeg (mp3, Ogg Opus, ADTS AAC, FLAC), or written as WAV / raw PCM as OpenAI sends them.

Runs in a worker process (CPU work, never on the event loop); knows nothing of HTTP. Failures are AudioToolFailed.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from pipeline.audio import ffmpeg_command, ffmpeg_environment
from pipeline.errors import AudioToolFailed

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SAMPLE_RATE = 24_000  # OpenAI's speech: 24 kHz, 16-bit, mono (pcm is exactly that, little-endian, no header)
CONTENT_TYPES: dict[str, str] = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac",
                                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
# Format → (ffmpeg muxer, encoder arguments); wav and pcm are taken from the s16le render instead.
_ENCODINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mp3": ("mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),
    "opus": ("ogg", ("-c:a", "libopus", "-b:a", "32k")),
    "aac": ("adts", ("-c:a", "aac", "-b:a", "64k")),
    "flac": ("flac", ("-c:a", "flac")),
    "pcm": ("s16le", ("-c:a", "pcm_s16le")),
}
TIMEOUT_S = 120.0


def tempo_filters(speed: float) -> list[str]:
    """atempo steps whose product is `speed` (each kept within 0.5..2.0, which every ffmpeg accepts)."""
    steps: list[str] = []
    while speed > 2.0:
        steps.append("atempo=2.0")
        speed /= 2.0
    while speed < 0.5:
        steps.append("atempo=0.5")
        speed /= 0.5
    if abs(speed - 1.0) > 1e-9:
        steps.append(f"atempo={speed:.6f}")
    return steps


def encode_speech(wav: bytes, response_format: SpeechFormat, speed: float = 1.0) -> bytes:
    """`wav` (any PCM WAV) at `speed`, as 24 kHz mono in `response_format`."""
    if response_format == "wav":
        from pipeline.engine.speech import pcm16_to_wav

        return pcm16_to_wav(_run(wav, "pcm", speed), SAMPLE_RATE)
    return _run(wav, response_format, speed)


def _run(wav: bytes, response_format: str, speed: float) -> bytes:
    muxer, codec = _ENCODINGS[response_format]
    filters = ["aresample=24000", *tempo_filters(speed)]
    with tempfile.TemporaryDirectory(prefix="audiosum-speech-") as folder:
        source, output = Path(folder) / "in.wav", Path(folder) / f"out.{response_format}"
        source.write_bytes(wav)
        command = [*ffmpeg_command("error", protocols="file"), "-y", "-f", "wav", "-i", f"file:{source}",
                   "-af", ",".join(filters), "-ac", "1", "-ar", str(SAMPLE_RATE), *codec, "-f", muxer,
                   f"file:{output}"]
        try:
            done = subprocess.run(command, capture_output=True, env=ffmpeg_environment(), timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise AudioToolFailed(f"ffmpeg took longer than {TIMEOUT_S:g} s to encode {response_format}") from exc
        except OSError as exc:
            raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from exc
        if done.returncode != 0:
            raise AudioToolFailed(f"ffmpeg could not encode {response_format}: "
                                  f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        return output.read_bytes()
