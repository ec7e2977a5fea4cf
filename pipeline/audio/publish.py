"""Turn the model's WAV into a file ready to publish: loudness-normalised, encoded (wav/mp3/m4a/opus/flac), tagged.

Works in one private temp folder that it removes; never writes OUT/ (outputs.py does) or anywhere else.

Loudness: measure with ffmpeg's ebur128 (ITU-R BS.1770), apply a plain gain and, where that gain would push the
true peak over the ceiling, a lookahead limiter run at 4x the sample rate (so it sees inter-sample peaks). ffmpeg's
`loudnorm` cannot do this for speech: two-pass `linear=true` falls back to its dynamic mode whenever the gain would
break the peak limit (always, for the peak-normalised Piper voice: ~21 dB peak-to-loudness), and that mode landed
1.9 LU short of -16 on a 16 s narration. The limiter takes back part of the gain, so the gain is found by secant
steps on cheap lossless renders; then the encoded file itself is measured, and if the encoder moved it (an mp3
measures ~0.5 LU quieter than its source) the search is aimed off by the miss and the file encoded again.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mutagen import MutagenError

from pipeline.audio import (
    SILENCE_LUFS,
    AudioMeasurement,
    Loudness,
    WavInfo,
    ffmpeg_command,
    ffmpeg_environment,
    measure,
    sniff_container,
    wav_info,
)
from pipeline.audio.strip import audio_only
from pipeline.errors import AudioToolFailed, InvalidAudio
from pipeline.models import AUDIO_FORMATS, AudioFormat

FORMATS = AUDIO_FORMATS  # the --format choices (models.AudioFormat), each with its encoding below
TAG_KEYS = ("title", "artist", "album", "date", "comment")

DEFAULT_LOUDNESS_LUFS = -16.0
TRUE_PEAK_LIMIT_DBTP = -1.5
LOUDNESS_AIM_LU = 0.3      # stop correcting once the encoded file is this close (ebur128 reports 0.1 LU steps)
MAX_SEARCH_RENDERS = 6    # lossless renders per gain search
MAX_ENCODES = 3           # encodes (and searches aimed off by the encoder's measured shift)
MAX_GAIN_DB = 40.0         # beyond this we would be amplifying a noise floor, not speech
RENDER_TIMEOUT_FLOOR_S = 60.0

_ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2})?)?)?)?)?$")


@dataclass(frozen=True, slots=True)
class _Encoding:
    extension: str
    mime_type: str
    muxer: str
    codec: tuple[str, ...]
    sample_rate: int | None = None  # None: keep the source's rate
    mono: bool = False              # lossy formats are mixed down to one channel (speech)
    lossless: bool = True
    loudness_shift_lu: float = 0.0  # how much the encoder usually moves the measured loudness (a first guess only)
    ceiling_dbtp: float = -2.0      # where the limiter aims: under the limit by what the encoder tends to overshoot


_ENCODINGS: dict[AudioFormat, _Encoding] = {
    "wav": _Encoding("wav", "audio/wav", "wav", ("-c:a", "pcm_s16le")),
    # MPEG-1 Layer III at 44.1 kHz, 64 kbps CBR mono: every player and podcast host takes it, CBR keeps seeking and
    # length-based duration estimates right, and 64k is plenty for one voice. The Info (Xing) + LAME header
    # carries encoder delay and padding, so decoders trim them and the duration matches the WAV to the sample.
    # Its low-pass costs ~0.5 LU of measured loudness.
    "mp3": _Encoding("mp3", "audio/mpeg", "mp3",
                     ("-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "1", "-id3v2_version", "0"),
                     sample_rate=44100, mono=True, lossless=False, loudness_shift_lu=-0.5),
    # Ogg Opus (RFC 7845: .opus, audio/ogg) at 32 kbps VBR; Opus always runs at 48 kHz. Its peaks overshoot the
    # limiter by up to ~0.8 dB on speech, hence the lower ceiling.
    "opus": _Encoding("opus", "audio/ogg", "opus", ("-c:a", "libopus", "-b:a", "32k", "-vbr", "on"),
                      sample_rate=48000, mono=True, lossless=False, loudness_shift_lu=-0.3, ceiling_dbtp=-2.5),
    "flac": _Encoding("flac", "audio/flac", "flac", ("-c:a", "flac", "-compression_level", "8", "-sample_fmt", "s16")),
    # AAC-LC in MP4 (.m4a, audio/mp4) at 44.1 kHz, 64 kbps mono, by ffmpeg's native encoder (the bundled build has
    # no libfdk): what Apple Podcasts and every other app play. The edit list ffmpeg writes (edts/elst) tells
    # decoders to trim the encoder's priming, so the duration matches the WAV; +faststart puts the index first, so a
    # player can start before the download ends. Its low-pass costs ~0.3 LU, like mp3's.
    "m4a": _Encoding("m4a", "audio/mp4", "ipod", ("-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"),
                     sample_rate=44100, mono=True, lossless=False, loudness_shift_lu=-0.3),
}
AUDIO_SUFFIXES = frozenset(f".{encoding.extension}" for encoding in _ENCODINGS.values())
# What every podcast app plays (Apple Podcasts takes MP3 and AAC in MP4 and no other audio; Spotify, Pocket Casts
# and Overcast the same), and the copy a feed links when --format is another: MP3, because it is the one format
# every app, browser, car stereo and old phone plays, and its CBR frames let players that do not read the LAME
# header still seek and estimate the length. m4a would be a little smaller for the same quality, not more playable.
PODCAST_FORMATS: tuple[AudioFormat, ...] = ("mp3", "m4a")
FEED_FORMAT: AudioFormat = "mp3"


Chapters = tuple[tuple[float, str], ...]  # (start second, title) of each chapter, in order
MIN_CHAPTERS = 2  # one chapter marks nothing a listener could skip to


def chapter_marks(chapters: Sequence[tuple[float, str]]) -> Chapters:
    """The chapters worth marking in a file and in the feed: () for fewer than MIN_CHAPTERS; titles on one line
    (a part with no words of its own is "Part n"), starts in order and never negative."""
    if len(chapters) < MIN_CHAPTERS:
        return ()
    marks: list[tuple[float, str]] = []
    for number, (start, title) in enumerate(chapters, start=1):
        shown = " ".join(str(title).replace("\x00", " ").split()) or f"Part {number}"
        marks.append((round(max(float(start), marks[-1][0] if marks else 0.0), 3), shown))
    return tuple(marks)


def feed_copy_format(extension: str) -> AudioFormat | None:
    """The format of the copy the podcast feed links for a main file of this extension (no dot): FEED_FORMAT for
    wav, opus and flac, None for a file apps already play (mp3, m4a) and for what is not audio (txt)."""
    extension = extension.lower().lstrip(".")
    known = {encoding.extension for encoding in _ENCODINGS.values()}
    return FEED_FORMAT if extension in known and extension not in PODCAST_FORMATS else None


def is_audio_file(name: str) -> bool:
    """Whether an output file audiosum wrote is audio (any --format), from its suffix: the one place that decides
    it; .txt (--output text), .vtt and .json are not."""
    return Path(name).suffix.lower() in AUDIO_SUFFIXES


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """format; loudness_lufs: integrated-loudness target (None leaves the level alone); tags: title, artist,
    album, date (ISO 8601, e.g. 2025-03-14) and comment, each optional; feed_format: also make a copy in this
    podcast format (mp3 or m4a) from the same source, at the same target, for the feed to link; chapters: marks
    (chapter_marks) written into mp3 (ID3 CHAP and CTOC frames) and m4a files (a QuickTime chapter track and Nero
    chapters), ignored by the other formats."""

    format: AudioFormat = "mp3"
    loudness_lufs: float | None = DEFAULT_LOUDNESS_LUFS
    tags: Mapping[str, str] = field(default_factory=dict)
    feed_format: AudioFormat | None = None
    chapters: Chapters = ()
    # Audio a server encoded (publish_encoded) that decodes longer than this is InvalidAudio: its headers can lie
    # about its length, its transcript cannot (the runner passes plausible.longest_s of it). None: the decode's cap.
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.format not in _ENCODINGS:
            raise ValueError(f"unknown audio format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.feed_format is not None and (self.feed_format not in PODCAST_FORMATS
                                             or self.feed_format == self.format):
            raise ValueError(f"a feed copy is made in {' or '.join(PODCAST_FORMATS)}, for a file in another format "
                             f"(not {self.feed_format!r} for {self.format!r})")
        if self.loudness_lufs is not None and not (-50.0 <= self.loudness_lufs <= -5.0):
            raise ValueError(f"loudness target {self.loudness_lufs} LUFS is outside -50 to -5")
        unknown = set(self.tags) - set(TAG_KEYS)
        if unknown:
            raise ValueError(f"unknown tag(s) {', '.join(sorted(unknown))}: use {', '.join(TAG_KEYS)}")
        tags = {key: str(value).strip() for key, value in self.tags.items() if value is not None and str(value).strip()}
        if any("\x00" in value for value in tags.values()):
            raise ValueError("a tag holds a NUL character")
        if "date" in tags and not _ISO_DATE.match(tags["date"]):
            raise ValueError(f"tag date {tags['date']!r} is not an ISO 8601 date such as 2025-03-14")
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "chapters", chapter_marks(self.chapters))


@dataclass(frozen=True, slots=True)
class PublishedAudio:
    data: bytes
    extension: str            # without the dot
    mime_type: str
    duration_s: float         # what really decodes from `data`
    loudness_lufs: float      # integrated loudness of `data`, measured after encoding
    sample_rate: int
    true_peak_dbtp: float     # measured on `data`
    source_loudness_lufs: float
    gain_db: float            # gain applied before the limiter (0.0 when loudness is off)
    limited: bool             # whether the true-peak limiter was in the chain
    feed_copy: PublishedAudio | None = None  # with PublishOptions.feed_format: the copy the podcast feed links


def publish(wav: bytes, options: PublishOptions = PublishOptions()) -> PublishedAudio:
    """Normalise, encode and tag a PCM WAV (and with options.feed_format the feed's copy, from the same source and
    its one loudness measurement); InvalidAudio if `wav` is not one, AudioToolFailed if ffmpeg fails."""
    info = wav_info(wav)
    with tempfile.TemporaryDirectory(prefix="audiosum-publish-") as folder:
        source = Path(folder) / "source.wav"
        source.write_bytes(wav)
        before = measure(source).loudness
        main = _published(Path(folder), source, info, before, options.format, options.loudness_lufs, options.tags,
                          options.chapters)
        if options.feed_format is None:
            return main
        feed = _published(Path(folder), source, info, before, options.feed_format, options.loudness_lufs,
                          options.tags, options.chapters)
    return dataclasses.replace(main, feed_copy=feed)


def _published(folder: Path, source: Path, info: WavInfo, before: Loudness, audio_format: AudioFormat,
               target: float | None, tags: Mapping[str, str], chapters: Chapters) -> PublishedAudio:
    """The WAV at `source` (measured as `before`) normalised to target, encoded in audio_format, tagged and
    marked with its chapters."""
    encoding = _ENCODINGS[audio_format]
    rate = encoding.sample_rate or info.sample_rate
    channels = 1 if encoding.mono else info.channels
    timeout_s = RENDER_TIMEOUT_FLOOR_S + info.duration_s
    output = folder / f"episode.{encoding.extension}"
    scratch = folder / f"search-{encoding.extension}.wav"
    chapters_file = None
    if chapters and audio_format == "m4a":  # mutagen cannot write MP4 chapters: ffmpeg muxes them as it encodes
        chapters_file = folder / "chapters.ffmeta"
        chapters_file.write_text(_ffmetadata(chapters, info.duration_s), encoding="utf-8")

    def final(gain_db: float | None, ceiling_dbtp: float | None) -> AudioMeasurement:
        if audio_format == "mp3":
            # Render the PCM first so its exact length is known: ffmpeg's LAME header can under-declare the
            # padding (by up to ~1 ms seen), and decoders trim exactly what the header declares.
            pcm = folder / "final.wav"
            _encode(source, pcm, _ENCODINGS["wav"], rate, channels, gain_db, ceiling_dbtp, {}, str(folder),
                    timeout_s, info.sample_rate)
            _encode(pcm, output, encoding, rate, channels, None, None, {}, str(folder), timeout_s, rate)
            _declare_mp3_length(output, wav_info(pcm.read_bytes()).frames)
        else:
            _encode(source, output, encoding, rate, channels, gain_db, ceiling_dbtp, tags, str(folder),
                    timeout_s, info.sample_rate, chapters_file=chapters_file)
        try:
            _write_tags(output, audio_format, tags, chapters, info.duration_s)
        except MutagenError as exc:
            raise AudioToolFailed(f"cannot tag the {encoding.extension} file: {exc}") from exc
        return measure(output)

    def search(gain_db: float | None, ceiling_dbtp: float | None) -> AudioMeasurement:
        _encode(source, scratch, _ENCODINGS["wav"], info.sample_rate, channels, gain_db, ceiling_dbtp, {},
                str(folder), timeout_s, info.sample_rate)
        return measure(scratch)

    if target is None or before.integrated_lufs <= SILENCE_LUFS:
        after = final(None, None)
        gain, limited = 0.0, False
    else:
        gain, limited, after = _normalise(final, final if encoding.lossless else search, target, before,
                                          encoding.loudness_shift_lu, encoding.ceiling_dbtp)
    return PublishedAudio(data=output.read_bytes(), extension=encoding.extension, mime_type=encoding.mime_type,
                          duration_s=after.duration_s, loudness_lufs=after.loudness.integrated_lufs,
                          sample_rate=after.sample_rate, true_peak_dbtp=after.loudness.true_peak_dbtp,
                          source_loudness_lufs=before.integrated_lufs, gain_db=round(gain, 2), limited=limited)


# What each --format's bytes look like when the API sends them encoded (sniff_container's names).
_CONTAINERS: dict[AudioFormat, str] = {"mp3": "mp3", "opus": "ogg", "flac": "flac", "wav": "wav"}


def publish_encoded(data: bytes, options: PublishOptions) -> PublishedAudio:
    """Audio the API already encoded in --format (no loudness change asked): checked to be that format, stripped to
    its audio (strip.audio_only: none of the server's tags or trailing bytes), tagged and measured by one decode,
    never re-encoded. With options.feed_format, the feed's copy is encoded from one decode of it, at its level.
    InvalidAudio when it is not that format or does not decode."""
    encoding = _ENCODINGS[options.format]
    if options.loudness_lufs is not None:
        raise ValueError("publish_encoded keeps the level as it came: a loudness target needs publish()")
    found = sniff_container(data[:4096])
    if found != _CONTAINERS.get(options.format):
        raise InvalidAudio(f"the answer's audio is not {options.format} (it looks like {found or 'nothing known'})")
    with tempfile.TemporaryDirectory(prefix="audiosum-publish-") as folder:
        output = Path(folder) / f"episode.{encoding.extension}"
        output.write_bytes(audio_only(data, _CONTAINERS[options.format]))
        measured = measure(output) if options.max_seconds is None else measure(output, max_seconds=options.max_seconds)
        try:
            _write_tags(output, options.format, options.tags, options.chapters, measured.duration_s)
        except MutagenError as exc:
            raise InvalidAudio(f"cannot tag the {encoding.extension} audio: {exc}") from exc
        tagged = output.read_bytes()
        feed = None
        if options.feed_format is not None:
            decoded = Path(folder) / "decoded.wav"
            _encode(output, decoded, _ENCODINGS["wav"], measured.sample_rate, measured.channels, None, None, {},
                    folder, RENDER_TIMEOUT_FLOOR_S + measured.duration_s, measured.sample_rate,
                    demuxer=_CONTAINERS[options.format])
            feed = _published(Path(folder), decoded, wav_info(decoded.read_bytes()), measured.loudness,
                              options.feed_format, None, options.tags, options.chapters)
    return PublishedAudio(data=tagged, extension=encoding.extension, mime_type=encoding.mime_type,
                          duration_s=measured.duration_s, loudness_lufs=measured.loudness.integrated_lufs,
                          sample_rate=measured.sample_rate, true_peak_dbtp=measured.loudness.true_peak_dbtp,
                          source_loudness_lufs=measured.loudness.integrated_lufs, gain_db=0.0, limited=False,
                          feed_copy=feed)


Render = Callable[[float | None, float | None], AudioMeasurement]


def _normalise(final: Render, search: Render, target: float, before: Loudness, shift_lu: float,
               ceiling: float) -> tuple[float, bool, AudioMeasurement]:
    """Gain (and whether the limiter is needed) that puts the encoded file at target, and that file's measurement.

    The gain is searched on cheap lossless renders; a lossy encoder then moves the loudness a little (shift_lu is the
    usual amount, a first guess), so the encoded file is measured and, if it misses, the search aims off by the miss.
    """
    aim = target - shift_lu
    gain = min(target - before.integrated_lufs, MAX_GAIN_DB)
    slope = 1.0
    for _ in range(MAX_ENCODES):
        gain, limited, slope, searched = _search_gain(search, aim, gain, ceiling, before.true_peak_dbtp, slope)
        after = searched if search is final else final(gain, ceiling if limited else None)
        miss = target - after.loudness.integrated_lufs
        over = after.loudness.true_peak_dbtp - TRUE_PEAK_LIMIT_DBTP
        if abs(miss) <= LOUDNESS_AIM_LU and over <= 0:
            break
        aim += miss
        if over > 0:
            # The encoder overshot the ceiling: limit lower (this costs a little loudness, found by the next search).
            ceiling -= over + 0.1
    return gain, limited, after


def _search_gain(render: Render, aim: float, gain: float, ceiling: float, peak: float,
                 slope: float) -> tuple[float, bool, float, AudioMeasurement]:
    """Secant steps on the gain until a render measures within LOUDNESS_AIM_LU of aim (the limiter makes the
    loudness rise slower than the gain, so the slope is learned from the renders)."""
    previous: tuple[float, float] | None = None
    for _ in range(MAX_SEARCH_RENDERS):
        limited = peak + gain > ceiling
        applied, measured = gain, render(gain, ceiling if limited else None)
        loudness = measured.loudness.integrated_lufs
        miss = aim - loudness
        if abs(miss) <= LOUDNESS_AIM_LU:
            break
        if previous is not None and previous[0] != gain:
            estimate = (loudness - previous[1]) / (gain - previous[0])
            slope = min(max(estimate, 0.2), 1.0) if math.isfinite(estimate) else slope
        previous = (gain, loudness)
        if gain >= MAX_GAIN_DB and miss > 0:
            break
        gain = min(gain + miss / slope, MAX_GAIN_DB)
    return applied, limited, slope, measured


def _filters(gain_db: float | None, ceiling_dbtp: float | None, source_rate: int) -> list[str]:
    if gain_db is None:
        return []
    chain = [f"volume={gain_db:.3f}dB"]
    if ceiling_dbtp is not None:
        # 4x oversampling lets the sample-peak limiter hold inter-sample (true) peaks too; latency=true keeps
        # the timing (and so the duration) unchanged.
        chain += [f"aresample={min(source_rate * 4, 192000)}",
                  f"alimiter=limit={10 ** (ceiling_dbtp / 20):.5f}:attack=5:release=50:level=false:latency=true"]
    return ["-af", ",".join(chain)]


def _encode(source: Path, output: Path, encoding: _Encoding, rate: int, channels: int, gain_db: float | None,
            ceiling_dbtp: float | None, tags: Mapping[str, str], folder: str, timeout_s: float,
            source_rate: int, demuxer: str = "wav", chapters_file: Path | None = None) -> None:
    command = [*ffmpeg_command("level+error", protocols="file"), "-y", "-f", demuxer, "-i", f"file:{source}"]
    if chapters_file is not None:
        # Chapters from the FFMETADATA file; only the global metadata is dropped (-map_metadata -1 would drop the
        # chapters' titles too), and the mov muxer writes them as a QuickTime chapter track and Nero chpl.
        command += ["-f", "ffmetadata", "-i", f"file:{chapters_file}", "-map_chapters", "1", "-map_metadata:g", "-1"]
    else:
        command += ["-map_metadata", "-1"]
    command += ["-map", "0:a:0", "-fflags", "+bitexact", "-flags:a", "+bitexact",
               *_filters(gain_db, ceiling_dbtp, source_rate),
               "-ar", str(rate), "-ac", str(channels), *encoding.codec]
    if encoding.muxer == "wav":
        # RIFF INFO (INAM, IART, IPRD, ICRD, ICMT), which mutagen cannot write; mutagen adds an ID3 chunk as well.
        command += [arg for key in TAG_KEYS if key in tags for arg in ("-metadata", f"{key}={tags[key]}")]
    command += ["-f", encoding.muxer, f"file:{output}"]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, cwd=folder,
                                env=ffmpeg_environment(), timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise AudioToolFailed(f"ffmpeg took longer than {timeout_s:g} s to encode {encoding.extension}") from exc
    except OSError as exc:
        raise AudioToolFailed(f"cannot run ffmpeg: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioToolFailed(f"ffmpeg could not encode {encoding.extension}: "
                              f"{message[-1] if message else f'exit {result.returncode}'}")


def _declare_mp3_length(path: Path, samples: int) -> None:
    """Make the LAME header's end padding say exactly how many samples the encoder was given.

    Layout (as ffmpeg's mp3 muxer writes it): the first frame holds the Info/Xing tag after the side information;
    encoder delay and padding are 12 bits each, 141 bytes into that tag; the tag's CRC-16 covers the frame's first
    190 bytes. Anything unexpected is left alone: the file still plays, only less exactly.
    """
    data = bytearray(path.read_bytes())
    if len(data) < 192 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0 or (data[1] >> 1) & 3 != 1:
        return
    mpeg1, mono = (data[1] >> 3) & 3 == 3, data[3] >> 6 == 3
    xing = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    tag, flags = bytes(data[xing:xing + 4]), int.from_bytes(data[xing + 4:xing + 8], "big")
    if tag not in (b"Info", b"Xing") or flags & 0x0F != 0x0F:
        return
    frames = int.from_bytes(data[xing + 8:xing + 12], "big")
    delay = int.from_bytes(data[xing + 141:xing + 144], "big") >> 12
    padding = frames * (1152 if mpeg1 else 576) - delay - samples
    if not 0 <= padding < 4096:
        return
    data[xing + 141:xing + 144] = (delay << 12 | padding).to_bytes(3, "big")
    crc_at = xing + 154
    data[crc_at:crc_at + 2] = b"\0\0"
    data[crc_at:crc_at + 2] = _crc16(bytes(data[:190])).to_bytes(2, "big")
    path.write_bytes(data)


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (reflected 0x8005), the LAME tag's checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _ffmetadata(chapters: Chapters, duration_s: float) -> str:
    """ffmpeg's FFMETADATA text for these chapters, in milliseconds, each ending where the next starts."""
    def escaped(text: str) -> str:
        return re.sub(r"([=;#\\\n])", r"\\\1", text)

    lines = [";FFMETADATA1"]
    for (start, title), end in _with_ends(chapters, duration_s):
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(start * 1000)}", f"END={round(end * 1000)}",
                  f"title={escaped(title)}"]
    return "\n".join(lines) + "\n"


def _with_ends(chapters: Chapters, duration_s: float) -> list[tuple[tuple[float, str], float]]:
    ends = [start for start, _ in chapters[1:]] + [max(duration_s, chapters[-1][0])]
    return list(zip(chapters, ends))


def _order_chapter_frames(path: Path) -> None:
    """Put the ID3v2.3 tag's CHAP frames in order of their start, in place (same bytes, other order).

    mutagen writes frames shortest first, and ffmpeg (with the players built on it) lists CHAP frames in file order,
    not by the CTOC, so the chapters would show shuffled. Anything unexpected (another version, unsynchronisation,
    an extended header) is left alone: the CTOC still orders them for players that read it.
    """
    data = bytearray(path.read_bytes())
    if len(data) < 10 or data[:3] != b"ID3" or data[3] != 3 or data[5] & 0xC0:
        return
    end = 10 + sum((byte & 0x7F) << (7 * (3 - index)) for index, byte in enumerate(data[6:10]))
    frames: list[bytes] = []
    at = 10
    while at + 10 <= end and data[at] != 0:
        size = int.from_bytes(data[at + 4:at + 8], "big")
        if at + 10 + size > end:
            return
        frames.append(bytes(data[at:at + 10 + size]))
        at += 10 + size

    def start_ms(frame: bytes) -> int:
        element_end = frame.index(b"\0", 10)
        return int.from_bytes(frame[element_end + 1:element_end + 5], "big")

    in_order = iter(sorted((frame for frame in frames if frame[:4] == b"CHAP"), key=start_ms))
    data[10:at] = b"".join(next(in_order) if frame[:4] == b"CHAP" else frame for frame in frames)
    path.write_bytes(data)


def _write_tags(path: Path, audio_format: AudioFormat, tags: Mapping[str, str], chapters: Chapters = (),
                duration_s: float = 0.0) -> None:
    if not tags and not (chapters and audio_format == "mp3"):
        return
    if audio_format in ("mp3", "wav"):
        from mutagen.id3 import CHAP, COMM, CTOC, ID3, TALB, TDRC, TIT2, TPE1, CTOCFlags

        frames = {"title": TIT2, "artist": TPE1, "album": TALB, "date": TDRC}
        id3: Any  # mutagen is untyped; its WAVE tags are ID3 too
        if audio_format == "mp3":
            id3 = ID3()
        else:
            from mutagen.wave import WAVE

            wave_file = WAVE(path)
            wave_file.add_tags()
            id3 = wave_file.tags  # add_tags() just made them
        for key, frame in frames.items():
            if key in tags:
                id3.add(frame(encoding=3, text=[tags[key]]))
        if "comment" in tags:
            id3.add(COMM(encoding=3, lang="eng", desc="", text=[tags["comment"]]))
        if chapters and audio_format == "mp3":
            # ID3v2 Chapter Frame Addendum: one CHAP per chapter (times in ms; byte offsets unused, all ones) and a
            # top-level, ordered CTOC listing them, which is what players read to show and skip chapters.
            ids = [f"chp{number}" for number in range(len(chapters))]
            id3.add(CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED, child_element_ids=ids,
                         sub_frames=[TIT2(encoding=3, text=[tags.get("title") or "Chapters"])]))
            for element_id, ((start, title), end) in zip(ids, _with_ends(chapters, duration_s)):
                id3.add(CHAP(element_id=element_id, start_time=round(start * 1000), end_time=round(end * 1000),
                             start_offset=0xFFFFFFFF, end_offset=0xFFFFFFFF,
                             sub_frames=[TIT2(encoding=3, text=[title])]))
        # ID3v2.3: the version every podcast app and OS reads (mutagen writes TDRC as TYER/TDAT there).
        if audio_format == "mp3":
            id3.save(path, v2_version=3)
            if chapters:
                _order_chapter_frames(path)
        else:
            wave_file.save(v2_version=3)
        return
    if audio_format == "m4a":
        from mutagen.mp4 import MP4

        atoms = {"title": "\xa9nam", "artist": "\xa9ART", "album": "\xa9alb", "date": "\xa9day", "comment": "\xa9cmt"}
        mp4 = MP4(path)
        if mp4.tags is None:
            mp4.add_tags()
        for key, value in tags.items():
            mp4[atoms[key]] = [value]
        mp4.save()
        return
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus

    vorbis = FLAC(path) if audio_format == "flac" else OggOpus(path)
    if vorbis.tags is None:
        vorbis.add_tags()
    for key, value in tags.items():
        vorbis[key.upper()] = [value]
    vorbis.save()


__all__ = ["FEED_FORMAT", "FORMATS", "PODCAST_FORMATS", "TAG_KEYS", "PublishOptions", "PublishedAudio",
           "chapter_marks", "feed_copy_format", "publish", "publish_encoded"]
