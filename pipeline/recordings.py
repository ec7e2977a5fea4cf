"""Recordings made ready for the API's `input_audio`: checked, converted to MP3 where needed, split on silence.

WAV and MP3 within the size limit travel as they are; anything else is converted with the bundled ffmpeg
(pip's ffmpeg has no ffprobe, so pydub cannot decode compressed files itself). Nothing is written to disk.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.audio import (AudioToolFailed, InvalidAudio, decode_to_pcm, demuxer_for, duration_of,
                            ffmpeg_environment, ffmpeg_exe)
from pipeline.errors import DocumentError
from pipeline.models import AudioSource

API_FORMATS = {".wav": "wav", ".mp3": "mp3"}  # what input_audio accepts
MP3_BITRATE_BPS = 64_000  # mono speech: clear enough for a model, and an hour is 29 MB
MP3_SAMPLE_RATE = 24_000
MAX_SECONDS = 4 * 3600.0
SILENCE_SCAN_RATE = 8_000  # the silence search needs loudness, not fidelity: 57 MB of PCM per hour
MIN_SILENCE_MS = 350
ENCODE_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class AudioPart:
    """One request's worth of a recording."""

    data: bytes
    format: Literal["wav", "mp3"]
    start_s: float
    duration_s: float


def prepare(source: AudioSource, max_bytes: int) -> list[AudioPart]:
    """The recording as parts of at most max_bytes each, in order; DocumentError when it cannot be used."""
    try:
        duration = duration_of(source.path, suffix=source.suffix, max_seconds=MAX_SECONDS)
        as_is = API_FORMATS.get(source.suffix.lower())
        if as_is is not None and source.size <= max_bytes:
            return [AudioPart(_read(source.path), as_is, 0.0, duration)]  # type: ignore[arg-type]
        longest = max_bytes * 8 / MP3_BITRATE_BPS * 0.95  # headroom for frame padding and the Xing header
        if duration <= longest:
            return [AudioPart(encode_mp3(source.path, source.suffix, 0.0, None, max_bytes), "mp3", 0.0, duration)]
        cuts = silence_cuts(source.path, source.suffix, duration, longest)
        return [AudioPart(encode_mp3(source.path, source.suffix, start, end - start, max_bytes), "mp3", start,
                          end - start) for start, end in cuts]
    except InvalidAudio as exc:
        raise DocumentError(f"the recording cannot be used: {exc}") from None
    except AudioToolFailed as exc:
        raise DocumentError(f"could not convert the recording: {exc}") from None


def silence_cuts(path: Path, suffix: str, duration_s: float, longest_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of parts no longer than longest_s, cut in the middle of pauses where there are any."""
    from pydub import AudioSegment, silence

    pcm, rate, _ = decode_to_pcm(path, suffix=suffix, sample_rate=SILENCE_SCAN_RATE, channels=1,
                                 max_seconds=MAX_SECONDS)
    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=1)
    del pcm
    # "Silence" is relative to the recording's own level: 16 dB under its average catches room-tone pauses.
    threshold = segment.dBFS - 16 if segment.rms else -90.0
    pauses = silence.detect_silence(segment, min_silence_len=MIN_SILENCE_MS, silence_thresh=threshold, seek_step=10)
    midpoints = [(a + b) / 2000.0 for a, b in pauses]
    return plan_cuts(midpoints, duration_s, longest_s)


def plan_cuts(pause_midpoints_s: list[float], duration_s: float, longest_s: float) -> list[tuple[float, float]]:
    """Greedy: each part ends at the last pause that keeps it within longest_s, or hard at longest_s if none."""
    cuts: list[tuple[float, float]] = []
    start = 0.0
    while duration_s - start > longest_s:
        candidates = [m for m in pause_midpoints_s if start + 1.0 < m <= start + longest_s]
        end = candidates[-1] if candidates else start + longest_s
        cuts.append((round(start, 3), round(end, 3)))
        start = end
    cuts.append((round(start, 3), round(duration_s, 3)))
    return cuts


def encode_mp3(path: Path, suffix: str, start_s: float, length_s: float | None, max_bytes: int) -> bytes:
    """Mono MP3 of [start, start + length) of a recording, made by the bundled ffmpeg straight to a pipe."""
    demuxer = demuxer_for(suffix)  # the name was checked against the content by duration_of
    command = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
               "-protocol_whitelist", "file,pipe"]
    if start_s > 0:
        command += ["-ss", f"{start_s:.3f}"]
    if length_s is not None:
        command += ["-t", f"{length_s:.3f}"]
    if demuxer is not None:
        command += ["-f", demuxer]
    command += ["-i", f"file:{path}", "-map", "0:a:0", "-vn", "-map_metadata", "-1", "-ac", "1",
                "-ar", str(MP3_SAMPLE_RATE), "-c:a", "libmp3lame", "-b:a", str(MP3_BITRATE_BPS), "-f", "mp3",
                "pipe:1"]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=ffmpeg_environment(),
                                timeout=ENCODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AudioToolFailed(f"ffmpeg took longer than {ENCODE_TIMEOUT_S:g} s to convert the recording") from None
    except OSError as exc:
        raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from None
    if result.returncode != 0 or not result.stdout:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioToolFailed(f"ffmpeg could not convert it to MP3: {detail[-1] if detail else 'no output'}")
    if len(result.stdout) > max_bytes:
        raise DocumentError(f"a part of the recording is {len(result.stdout)} bytes as MP3, over the "
                            f"{max_bytes}-byte limit")
    return result.stdout


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise DocumentError(f"cannot read the recording: {exc.strerror or exc}") from None
