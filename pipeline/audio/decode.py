"""Decoding and measuring audio with the bundled ffmpeg: PCM, a PCM stream, the real duration, the loudness.

Checks the bytes (containers.py) before ffmpeg reads them; writes only inside a private temp folder, never to OUT/.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from pipeline.audio.containers import _DEMUXER, _container
from pipeline.audio.ffmpeg import ffmpeg_command, ffmpeg_environment
from pipeline.audio.wav import riff_chunks
from pipeline.errors import AudioToolFailed, InvalidAudio

# imageio-ffmpeg ships a static ffmpeg (a GPLv3 build) but no ffprobe, so everything here calls ffmpeg itself: the
# container is sniffed from its first bytes and forced with -f (a mislabelled file, random bytes or a playlist never
# reach ffmpeg's probing), the decode is streamed with a cap on its length and a timeout, and ffmpeg's own complaints
# (errors, truncation warnings, a header promising more audio than decodes) turn into InvalidAudio.

DEFAULT_MAX_SECONDS = 4 * 3600.0
DEFAULT_TIMEOUT_S = 300.0
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: ebur128 reports this when no 400 ms block is louder

# ffmpeg warnings that mean the file is damaged rather than merely unusual.
_DAMAGE_WARNINGS = ("do not match", "corrupt", "truncat", "incomplete", "invalid", "missing", "overread", "error")


@dataclass(frozen=True, slots=True)
class Loudness:
    """ITU-R BS.1770 / EBU R128 figures as ffmpeg's ebur128 filter reports them (0.1 LU resolution)."""

    integrated_lufs: float
    true_peak_dbtp: float
    range_lu: float


@dataclass(frozen=True, slots=True)
class AudioMeasurement:
    duration_s: float
    sample_rate: int
    channels: int
    loudness: Loudness


def decode_to_pcm(data: bytes | Path, *, suffix: str | None = None, sample_rate: int | None = None,
                  channels: int | None = None, max_seconds: float = DEFAULT_MAX_SECONDS,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[bytes, int, int]:
    """Decode WAV, MP3, Ogg (Opus/Vorbis/FLAC) or FLAC to interleaved little-endian 16-bit PCM.

    Returns (pcm, sample_rate, channels); the rate and channel count are the file's own unless asked for.
    `suffix` is the extension the bytes claim to have (a Path's own suffix is used by default): content that does
    not match it is InvalidAudio. So is anything damaged, truncated, empty or longer than max_seconds.
    """
    decoded = _decode(data, suffix=suffix, sample_rate=sample_rate, channels=channels, keep_pcm=True,
                      loudness=False, max_seconds=max_seconds, timeout_s=timeout_s)
    return decoded.pcm, decoded.sample_rate, decoded.channels


@contextlib.contextmanager
def pcm_stream(data: bytes | Path, *, suffix: str | None = None, sample_rate: int, channels: int = 1,
               max_seconds: float = DEFAULT_MAX_SECONDS, checked: bool = False) -> Iterator[BinaryIO]:
    """A recording as raw little-endian 16-bit PCM read from ffmpeg's pipe, so a consumer that works frame by
    frame never holds the whole decode (an hour at 16 kHz is 115 MB). The recording is checked first, as
    decode_to_pcm checks it (damage, a name that lies, the length cap), so what the stream carries is trusted;
    checked=True skips that when the caller has just done it (duration_of)."""
    if not checked:
        duration_of(data, suffix=suffix, max_seconds=max_seconds)
    with _ffmpeg_input(data, suffix) as (kind, source, folder):
        command = [*ffmpeg_command("repeat+level+error"), "-f", _DEMUXER.get(kind, kind), "-i", f"file:{source}",
                   "-map", "0:a:0", "-vn", "-ar", str(sample_rate), "-ac", str(channels), "-f", "s16le", "pipe:1"]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, cwd=folder, env=ffmpeg_environment())
        except OSError as exc:
            raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from exc
        assert process.stdout is not None
        try:
            # IO[bytes] at run time is a BufferedReader: read(n) returns n bytes until the end, as frame readers need.
            yield process.stdout  # type: ignore[misc]
        finally:
            process.kill()
            process.wait()
            process.stdout.close()


def duration_of(data: bytes | Path, *, suffix: str | None = None, max_seconds: float = DEFAULT_MAX_SECONDS,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Seconds of audio that really decode (encoder delay and padding already trimmed), counted in samples."""
    decoded = _decode(data, suffix=suffix, sample_rate=None, channels=1, keep_pcm=False, loudness=False,
                      max_seconds=max_seconds, timeout_s=timeout_s)
    return decoded.frames / decoded.sample_rate


def measure(data: bytes | Path, *, suffix: str | None = None, max_seconds: float = DEFAULT_MAX_SECONDS,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> AudioMeasurement:
    """Duration, rate, channels and loudness from one decode."""
    decoded = _decode(data, suffix=suffix, sample_rate=None, channels=None, keep_pcm=False, loudness=True,
                      max_seconds=max_seconds, timeout_s=timeout_s)
    assert decoded.loudness is not None
    return AudioMeasurement(duration_s=decoded.frames / decoded.sample_rate, sample_rate=decoded.sample_rate,
                            channels=decoded.channels, loudness=decoded.loudness)


def measure_loudness(data: bytes | Path, *, suffix: str | None = None) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 gating, via ffmpeg's ebur128).

    SILENCE_LUFS (-70.0) means nothing passed the absolute gate: silence, or under 0.4 s of audio.
    """
    return measure(data, suffix=suffix).loudness.integrated_lufs


@dataclass(frozen=True, slots=True)
class _Decoded:
    pcm: bytes
    frames: int
    sample_rate: int
    channels: int
    loudness: Loudness | None


@contextlib.contextmanager
def _ffmpeg_input(data: bytes | Path, suffix: str | None) -> Iterator[tuple[str, Path, str]]:
    """(container, file for ffmpeg to read, a private scratch folder): the bytes are checked against their name
    first, and bytes in memory are written to the scratch folder, which is removed afterwards."""
    kind = _container(data, suffix)
    with tempfile.TemporaryDirectory(prefix="audiosum-ffmpeg-") as folder:
        if isinstance(data, Path):
            source = data.resolve()
        else:
            source = Path(folder) / f"input.{kind}"
            source.write_bytes(data)
        yield kind, source, folder


def _decode(data: bytes | Path, *, suffix: str | None, sample_rate: int | None, channels: int | None,
            keep_pcm: bool, loudness: bool, max_seconds: float, timeout_s: float) -> _Decoded:
    with _ffmpeg_input(data, suffix) as (kind, source, folder):
        # -xerror stops at the first decoding error (junk fails fast), but not for WAV: ffmpeg flags the short
        # last packet of a streamed WAV (placeholder sizes) as corrupt, and -xerror would make that fatal.
        command = [*ffmpeg_command("repeat+level+info"), *(["-xerror"] if kind != "wav" else []),
                   "-f", _DEMUXER.get(kind, kind), "-i", f"file:{source}", "-map", "0:a:0", "-vn",
                   "-map_metadata", "-1"]
        if loudness:
            command += ["-af", "ebur128=peak=true:framelog=quiet"]
        if sample_rate:
            command += ["-ar", str(sample_rate)]
        if channels:
            command += ["-ac", str(channels)]
        command += ["-c:a", "pcm_s16le", "-f", "wav", "pipe:1"]
        stderr_path = Path(folder) / "ffmpeg.log"
        streamed = _stream_pcm(command, stderr_path, folder, keep_pcm, max_seconds, timeout_s)
        log = stderr_path.read_text(encoding="utf-8", errors="replace")
    frames, rate = streamed.frames, streamed.sample_rate
    if streamed.timed_out:
        raise InvalidAudio(f"decoding took longer than {timeout_s:g} s")
    if frames > max_seconds * rate:
        raise InvalidAudio(f"longer than the {max_seconds:g} s cap")
    _raise_for_damage(log, kind)
    if frames == 0:
        raise InvalidAudio(f"{kind.upper()} data holds no decodable audio")
    decoded_s = frames / rate
    declared = _declared_duration(log)
    if declared is not None and kind != "wav" and decoded_s < declared - max(0.1, declared * 0.01):
        raise InvalidAudio(f"truncated {kind.upper()}: its header says {declared:.2f} s but "
                           f"only {decoded_s:.2f} s decode")
    return _Decoded(pcm=streamed.pcm, frames=frames, sample_rate=rate, channels=streamed.channels,
                    loudness=_parse_ebur128(log) if loudness else None)


class _Streamed(NamedTuple):
    """What a streamed decode gave: the PCM (empty unless kept), whole frames counted, its rate and channels, and
    whether the timeout killed it."""

    pcm: bytes
    frames: int
    sample_rate: int
    channels: int
    timed_out: bool


def _stream_pcm(command: list[str], stderr_path: Path, folder: str, keep_pcm: bool, max_seconds: float,
                timeout_s: float) -> _Streamed:
    """Run a decode writing WAV to stdout; count (and keep, if asked) its PCM, stopping at the length cap."""
    timed_out = threading.Event()
    with open(stderr_path, "wb") as stderr:
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                       cwd=folder, env=ffmpeg_environment())
        except OSError as exc:
            raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from exc

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        pieces: list[bytes] = []
        header = b""
        rate = count = 0
        data_bytes = 0
        limit = None
        try:
            assert process.stdout is not None
            while chunk := process.stdout.read(1 << 16):
                if limit is None:
                    header += chunk
                    parsed = _wav_stream_header(header)
                    if parsed is None:
                        continue
                    rate, count, offset = parsed
                    chunk = header[offset:]
                    limit = int(max_seconds * rate + 1) * count * 2
                data_bytes += len(chunk)
                if keep_pcm:
                    pieces.append(chunk)
                if data_bytes > limit:
                    process.kill()
                    break
            process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
    frame_bytes = count * 2
    frames = data_bytes // frame_bytes if frame_bytes else 0
    pcm = b"".join(pieces)[: frames * frame_bytes] if keep_pcm else b""
    return _Streamed(pcm, frames, rate or 1, count, timed_out.is_set())


def _wav_stream_header(header: bytes) -> tuple[int, int, int] | None:
    """(rate, channels, offset of the PCM) from the start of ffmpeg's streamed WAV, or None until it is all there.

    The sizes in a streamed header are placeholders; only the fmt chunk and the position of 'data' count.
    """
    rate, count = 0, 0
    for name, size, body in riff_chunks(header):
        if name == b"data":
            return (rate, count, body) if rate and count else None
        if len(header) < body + size:
            return None
        if name == b"fmt ":
            count = int.from_bytes(header[body + 2:body + 4], "little")
            rate = int.from_bytes(header[body + 4:body + 8], "little")
    return None


_LOG_LINE = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\] )*\[(?P<level>[a-z]+)\] (?P<text>.*)$")


def _raise_for_damage(log: str, kind: str) -> None:
    for line in log.splitlines():
        match = _LOG_LINE.match(line)
        if not match:
            continue
        level, text = match["level"], match["text"].strip()
        lowered = text.lower()
        if level in ("error", "fatal", "panic"):
            if "broken pipe" in lowered:  # our own length cap closed the pipe
                continue
            raise InvalidAudio(f"{kind.upper()} data does not decode: {text}")
        # PCM has nothing to damage but its length, which _wav_end_problem checks: ffmpeg's WAV warnings also fire
        # for a streamed WAV (0xFFFFFFFF placeholder sizes), which is fine.
        if level == "warning" and kind != "wav" and any(word in lowered for word in _DAMAGE_WARNINGS):
            what = "truncated" if "do not match" in lowered or "corrupt" in lowered else "damaged"
            raise InvalidAudio(f"{what} {kind.upper()} data: {text}")


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _declared_duration(log: str) -> float | None:
    match = _DURATION.search(log)
    if not match:
        return None
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])


def _parse_ebur128(log: str) -> Loudness:
    summary = log[log.rfind("Summary:"):]
    integrated = re.search(r"\bI:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"\bPeak:\s+(-?[\d.]+|-inf) dBFS", summary)
    lra = re.search(r"\bLRA:\s+(-?[\d.]+) LU", summary)
    if "Summary:" not in log or not integrated or not peak or not lra:
        raise AudioToolFailed("ffmpeg's ebur128 gave no loudness summary")
    return Loudness(integrated_lufs=max(float(integrated[1]), SILENCE_LUFS),
                    true_peak_dbtp=max(float(peak[1]), -200.0), range_lu=float(lra[1]))
