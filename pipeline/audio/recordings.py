"""Recordings made ready for the API's `input_audio`: checked, converted to MP3 where needed, split on silence.

WAV and MP3 within the size limit travel as they are; anything else is converted with the bundled ffmpeg
(pip's ffmpeg has no ffprobe, so pydub cannot decode compressed files itself). Nothing is written to disk.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.audio import demuxer_for, duration_of, ffmpeg_command, ffmpeg_environment, import_pydub, pcm_stream
from pipeline.errors import AudioToolFailed, DocumentError
from pipeline.models import AudioSource

InputAudioFormat = Literal["wav", "mp3"]  # what the API's input_audio takes (not --format)
API_FORMATS: dict[str, InputAudioFormat] = {".wav": "wav", ".mp3": "mp3"}  # what input_audio accepts
MP3_BITRATE_BPS = 64_000  # mono speech: clear enough for a model, and an hour is 29 MB
MP3_SAMPLE_RATE = 24_000
MAX_SECONDS = 4 * 3600.0
SILENCE_SCAN_RATE = 8_000  # the silence search needs loudness, not fidelity
MIN_SILENCE_MS = 350
SILENCE_CHUNK_S = 300  # five minutes of 8 kHz PCM (4.8 MB) are scanned at a time
ENCODE_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class AudioPart:
    """One request's worth of a recording."""

    data: bytes
    format: InputAudioFormat
    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class RecordingParts:
    """How a checked recording is sent: as it is, or as MP3 parts cut at pauses; parts are made one at a time,
    just before their request, so a long recording never sits in memory as a whole."""

    source: AudioSource
    duration_s: float
    as_is: InputAudioFormat | None  # the file travels unchanged (then there is one part)
    cuts: tuple[tuple[float, float], ...]  # (start, end) seconds of each part
    max_bytes: int

    def part(self, index: int) -> AudioPart:
        """The bytes of part `index` (0-based); DocumentError (AudioToolFailed if ffmpeg fails) if the file cannot
        be read or converted."""
        start, end = self.cuts[index]
        if self.as_is is not None:
            return AudioPart(_read(self.source.path), self.as_is, 0.0, self.duration_s)
        whole = len(self.cuts) == 1
        data = encode_mp3(self.source.path, self.source.suffix, start, None if whole else end - start, self.max_bytes)
        return AudioPart(data, "mp3", start, end - start)


def longest_part_s(max_bytes: int) -> float:
    """Seconds of converted MP3 that fit in max_bytes, with headroom for frame padding and the Xing header."""
    return max_bytes * 8 / MP3_BITRATE_BPS * 0.95


def sent_as_is(source: AudioSource, max_bytes: int) -> InputAudioFormat | None:
    return API_FORMATS.get(source.suffix.lower()) if source.size <= max_bytes else None


def part_count(source: AudioSource, duration_s: float, max_bytes: int) -> int:
    """How many requests a recording of this length takes, without looking for pauses (for --dry-run)."""
    if sent_as_is(source, max_bytes) is not None:
        return 1
    return max(1, math.ceil(duration_s / longest_part_s(max_bytes)))


def split_recording(source: AudioSource, max_bytes: int) -> RecordingParts:
    """Check the recording decodes (and is what its name says), then decide its parts; InvalidAudio if it does not,
    AudioToolFailed if ffmpeg fails (both DocumentErrors, with a message that already names the problem)."""
    duration = duration_of(source.path, suffix=source.suffix, max_seconds=MAX_SECONDS)
    as_is = sent_as_is(source, max_bytes)
    longest = longest_part_s(max_bytes)
    if as_is is not None or duration <= longest:
        cuts: tuple[tuple[float, float], ...] = ((0.0, round(duration, 3)),)
    else:
        cuts = tuple(silence_cuts(source.path, source.suffix, duration, longest))
    return RecordingParts(source, duration, as_is, cuts, max_bytes)


# The old names ("plan" also names the plan/ package and the dry run's plan); providers/openai still calls plan().
plan = split_recording
RecordingPlan = RecordingParts


def silence_cuts(path: Path, suffix: str, duration_s: float, longest_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of parts no longer than longest_s, cut in the middle of pauses where there are any."""
    return plan_cuts(pause_midpoints(path, suffix), duration_s, longest_s)


def pause_midpoints(path: Path, suffix: str) -> list[float]:
    """The middle (in seconds) of every pause of at least MIN_SILENCE_MS, found by pydub's detect_silence on an
    8 kHz decode read in chunks, so memory stays at one chunk however long the recording is."""
    pydub = import_pydub()
    rate = SILENCE_SCAN_RATE
    chunk_bytes = int(SILENCE_CHUNK_S * rate) * 2
    # Each chunk starts with the end of the one before, so a pause across a boundary is found in one of them.
    overlap_bytes = int(MIN_SILENCE_MS / 1000 * rate) * 2 * 2
    midpoints: list[float] = []
    start_byte = 0
    carry = b""
    with pcm_stream(path, suffix=suffix, sample_rate=rate, channels=1, max_seconds=MAX_SECONDS,
                    checked=True) as stream:
        while fresh := stream.read(chunk_bytes):
            block = carry + fresh
            segment = pydub.AudioSegment(data=block, sample_width=2, frame_rate=rate, channels=1)
            # "Silence" is relative to the level around it: 16 dB under this chunk's average catches room-tone
            # pauses, and follows a recording whose level drifts.
            threshold = segment.dBFS - 16 if segment.rms else -90.0
            offset_s = start_byte / (2 * rate)
            midpoints += [round(offset_s + (a + b) / 2000.0, 3) for a, b in pydub.silence.detect_silence(
                segment, min_silence_len=MIN_SILENCE_MS, silence_thresh=threshold, seek_step=10)]
            carry = block[-overlap_bytes:]
            start_byte += len(block) - len(carry)
    # A pause in an overlap is found twice, with slightly different bounds: either middle is a fine cut.
    return sorted(set(midpoints))


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
    command = ffmpeg_command("error")
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
    except subprocess.TimeoutExpired as exc:
        raise AudioToolFailed(f"ffmpeg took longer than {ENCODE_TIMEOUT_S:g} s to convert the recording") from exc
    except OSError as exc:
        raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from exc
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
        raise DocumentError(f"cannot read the recording: {exc.strerror or exc}") from exc
