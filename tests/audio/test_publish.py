"""Publishing: real speech and a quiet tone, normalised, encoded, tagged, then decoded and measured independently."""

from __future__ import annotations

import io
import os
import tempfile
import wave
from pathlib import Path

import mutagen
import numpy as np
import pytest
from oracles import integrated_lufs, true_peak_dbtp

from pipeline.audio import decode_to_pcm, duration_of, measure_loudness, pcm16_to_wav, wav_info
from pipeline.audio.publish import FORMATS, PublishedAudio, PublishOptions, publish
from pipeline.engine import speech
from pipeline.engine.tone import tone
from pipeline.errors import InvalidAudio

TAGS = {"title": "Harbour bridge reopens", "artist": "Nightly feed — Ünïcode", "album": "audiosum narrations",
        "date": "2025-03-14", "comment": "Spoken summary of the article"}


@pytest.fixture(scope="module")
def speech_wav() -> bytes:
    # load_voice, not init_worker: init_worker would make this test process ignore Ctrl-C.
    speech._voice = speech.load_voice(2)
    try:
        return speech.speak(["The harbour bridge reopened on Saturday after eighteen months of repairs.",
                             "Traffic engineers expect the morning queues to shorten by a third.",
                             "Cyclists get a separate lane for the first time."]).wav
    finally:
        speech._voice = None


@pytest.fixture(scope="module")
def quiet_tone_wav() -> bytes:
    """The tone engine's sine at a tenth of its level: about -44 LUFS, so normalising must add some 28 dB."""
    loud = tone(["a quiet tone that lasts long enough to measure its loudness properly"]).wav
    with wave.open(io.BytesIO(loud)) as reader:
        rate, samples = reader.getframerate(), np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    return pcm16_to_wav((samples // 10).astype("<i2").tobytes(), rate)


@pytest.fixture(scope="module")
def published(speech_wav: bytes) -> dict[str, PublishedAudio]:
    return {fmt: publish(speech_wav, PublishOptions(format=fmt, tags=TAGS)) for fmt in FORMATS}


def _pcm(wav: bytes) -> bytes:
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.readframes(reader.getnframes())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_wav_duration(fmt: str, speech_wav: bytes,
                                                  published: dict[str, PublishedAudio]) -> None:
    audio = published[fmt]
    pcm, rate, channels = decode_to_pcm(audio.data, suffix="." + audio.extension)
    decoded_s = len(pcm) / (2 * channels * rate)
    source_s = wav_info(speech_wav).duration_s
    assert abs(decoded_s - source_s) < 0.050
    assert audio.duration_s == pytest.approx(decoded_s, abs=1e-9)
    assert (rate, channels) == (audio.sample_rate, 1)
    assert audio.extension == fmt and audio.mime_type.startswith("audio/")


def test_mp3_encoder_delay_and_padding_are_declared_and_trimmed(speech_wav: bytes,
                                                                published: dict[str, PublishedAudio]) -> None:
    mp3 = published["mp3"].data
    frames, delay, padding = _lame_frames_delay_padding(mp3)
    assert delay > 0 and padding > 0
    pcm, rate, _ = decode_to_pcm(mp3, suffix=".mp3")
    # Every frame holds 1152 samples; the LAME header's delay and padding are exactly what the decoder removed,
    # which leaves the source's own length (resampled 22050 -> 44100 Hz, so exactly twice its frames).
    assert frames * 1152 - delay - padding == len(pcm) // 2
    assert len(pcm) // 2 == wav_info(speech_wav).frames * rate // wav_info(speech_wav).sample_rate


def test_mp3_length_is_exact_where_ffmpeg_declares_too_little_padding() -> None:
    # At this length ffmpeg's LAME header declares 1681 samples of padding where there are 1718, so a decoder
    # would play 37 samples too many; publish rewrites the header.
    frames = 236165
    sine = (np.sin(2 * np.pi * 300 * np.arange(frames) / 22050) * 8000).astype("<i2").tobytes()
    audio = publish(pcm16_to_wav(sine, 22050), PublishOptions(format="mp3", loudness_lufs=None))
    pcm, rate, _ = decode_to_pcm(audio.data, suffix=".mp3")
    assert (len(pcm) // 2, rate) == (2 * frames, 44100)
    # The header's accounting, from the file's own frame count: frames × 1152 − delay − padding is the source's
    # length (twice its frames at 44.1 kHz), whatever padding this ffmpeg build chose to declare.
    mp3_frames, delay, padding = _lame_frames_delay_padding(audio.data)
    assert mp3_frames * 1152 - delay - padding == 2 * frames


@pytest.mark.parametrize("fmt", FORMATS)
def test_speech_is_normalised_to_minus_16_with_true_peaks_held(fmt: str, speech_wav: bytes,
                                                                published: dict[str, PublishedAudio]) -> None:
    audio = published[fmt]
    # Measured by pyloudnorm and 4× oversampling (tests/oracles.py), not by the meter that set the level.
    assert integrated_lufs(speech_wav) < -18.5  # the voice comes out quieter than the target
    assert abs(integrated_lufs(audio.data) - -16.0) <= 1.0
    assert true_peak_dbtp(audio.data) <= -1.0  # publish aims at -1.5 dBTP; another meter may differ a little
    assert abs(audio.loudness_lufs - integrated_lufs(audio.data)) <= 0.5 and audio.limited


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_different_target_is_met_too(fmt: str, speech_wav: bytes) -> None:
    audio = publish(speech_wav, PublishOptions(format=fmt, loudness_lufs=-23.0))
    assert abs(integrated_lufs(audio.data) - -23.0) <= 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_quiet_tone_is_raised_a_long_way(fmt: str, quiet_tone_wav: bytes) -> None:
    assert integrated_lufs(quiet_tone_wav) < -40.0
    audio = publish(quiet_tone_wav, PublishOptions(format=fmt))
    assert audio.gain_db > 25.0
    assert abs(integrated_lufs(audio.data) - -16.0) <= 1.0
    assert abs(duration_of(audio.data, suffix="." + fmt) - wav_info(quiet_tone_wav).duration_s) < 0.050


@pytest.mark.parametrize("fmt", FORMATS)
def test_loudness_off_leaves_the_level_alone(fmt: str, speech_wav: bytes) -> None:
    audio = publish(speech_wav, PublishOptions(format=fmt, loudness_lufs=None))
    assert audio.gain_db == 0.0 and not audio.limited
    before = integrated_lufs(speech_wav)
    after = integrated_lufs(audio.data)
    if fmt in ("wav", "flac"):
        pcm, rate, _ = decode_to_pcm(audio.data, suffix="." + fmt)
        assert pcm == _pcm(speech_wav) and rate == wav_info(speech_wav).sample_rate  # bit for bit
        assert after == before
    else:
        # Lossy coding alone moves the measurement a little (the mp3 encoder's low-pass takes ~0.5 LU).
        assert abs(after - before) < 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_tags_read_back_with_mutagen(fmt: str, published: dict[str, PublishedAudio], tmp_path: Path) -> None:
    path = tmp_path / f"episode.{fmt}"
    path.write_bytes(published[fmt].data)
    tagged = mutagen.File(path)
    assert tagged is not None and tagged.tags is not None
    if fmt in ("mp3", "wav"):
        frames = tagged.tags
        assert str(frames["TIT2"]) == TAGS["title"] and str(frames["TPE1"]) == TAGS["artist"]
        assert str(frames["TALB"]) == TAGS["album"] and str(frames["TDRC"]) == TAGS["date"]
        assert str(frames["COMM::eng"]) == TAGS["comment"]
    elif fmt == "m4a":
        atoms = {"title": "\xa9nam", "artist": "\xa9ART", "album": "\xa9alb", "date": "\xa9day", "comment": "\xa9cmt"}
        for key, value in TAGS.items():
            assert tagged.tags[atoms[key]] == [value]
    else:
        for key, value in TAGS.items():
            assert tagged[key] == [value]
    if fmt == "wav":
        assert wav_info(published[fmt].data).frames > 0  # the ID3 and INFO chunks leave the WAV parseable


def test_publish_leaves_nothing_behind(speech_wav: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = set(os.listdir(Path.cwd()))
    publish(speech_wav, PublishOptions(format="opus", tags=TAGS))
    assert list(private.iterdir()) == []
    assert set(os.listdir(Path.cwd())) == before


def _random_bytes(size: int) -> bytes:
    return np.random.default_rng(6).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.mark.timeout(120)  # a damaged file must fail, not hang: the hang guard for every case below
def test_damaged_and_mislabelled_files_fail_cleanly_and_fast(published: dict[str, PublishedAudio],
                                                              speech_wav: bytes, tmp_path: Path) -> None:
    mp3, opus, flac = published["mp3"].data, published["opus"].data, published["flac"].data
    cases = {
        "truncated.mp3": mp3[: len(mp3) // 2],
        "header-only.mp3": mp3[:2000],
        "empty.mp3": b"",
        "random.mp3": _random_bytes(200_000),
        "random-after-sync.mp3": b"\xff\xfb\x90\x64" + _random_bytes(100_000),
        "speech-wav.mp3": speech_wav,
        "truncated.opus": opus[: len(opus) // 2],
        "truncated.flac": flac[: len(flac) // 2],
        "truncated-on-a-page.opus": opus[: opus.rfind(b"OggS")],
        "flac.opus": flac,
        "truncated.wav": speech_wav[: len(speech_wav) // 2],
        "zero-rate.wav": speech_wav[:24] + b"\0\0\0\0" + speech_wav[28:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for source in (path, data):
            # "Fast" is the test's timeout (a hang guard, not a measurement): a decode that waited on a damaged
            # file would hang, not be slow.
            with pytest.raises(InvalidAudio) as caught:
                decode_to_pcm(source, suffix=path.suffix)
            assert str(caught.value), name
    with pytest.raises(InvalidAudio, match="empty"):
        duration_of(b"")
    os.mkfifo(tmp_path / "pipe.mp3")
    with pytest.raises(InvalidAudio, match="not a regular file"):
        duration_of(tmp_path / "pipe.mp3")  # must not block reading a FIFO
    with pytest.raises(InvalidAudio, match="named .mp3 but holds WAV"):
        measure_loudness(tmp_path / "speech-wav.mp3")
    with pytest.raises(InvalidAudio):
        publish(mp3, PublishOptions())  # publish takes the model's WAV only


def test_a_streamed_wav_with_placeholder_sizes_decodes_whole(speech_wav: bytes) -> None:
    data_at = speech_wav.index(b"data") + 4
    streamed = speech_wav[:4] + b"\xff" * 4 + speech_wav[8:data_at] + b"\xff" * 4 + speech_wav[data_at + 4:]
    pcm, _, _ = decode_to_pcm(streamed)
    assert pcm == _pcm(speech_wav)


def test_decode_can_resample_and_caps_length(published: dict[str, PublishedAudio]) -> None:
    pcm, rate, channels = decode_to_pcm(published["opus"].data, suffix=".opus", sample_rate=16000, channels=2)
    assert (rate, channels) == (16000, 2)
    assert abs(len(pcm) / (4 * rate) - published["opus"].duration_s) < 0.01
    with pytest.raises(InvalidAudio, match="longer than"):
        decode_to_pcm(published["flac"].data, max_seconds=1.0)


@pytest.mark.parametrize("options", [
    {"format": "aac"},
    {"loudness_lufs": 3.0},
    {"tags": {"genre": "news"}},
    {"tags": {"date": "last Tuesday"}},
])
def test_bad_options_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        PublishOptions(**options)


def _lame_frames_delay_padding(mp3: bytes) -> tuple[int, int, int]:
    """Audio frames, encoder delay and padding from the Info/Xing + LAME header of an MPEG-1 mono file."""
    start = 0
    if mp3[:3] == b"ID3":
        start = 10 + ((mp3[6] & 0x7F) << 21 | (mp3[7] & 0x7F) << 14 | (mp3[8] & 0x7F) << 7 | (mp3[9] & 0x7F))
    assert mp3[start] == 0xFF and mp3[start + 1] & 0xFE == 0xFA  # MPEG-1 Layer III
    xing = start + 4 + 17  # after the header and a mono frame's side information
    assert mp3[xing:xing + 4] in (b"Info", b"Xing")
    flags = int.from_bytes(mp3[xing + 4:xing + 8], "big")
    assert flags & 1
    frames = int.from_bytes(mp3[xing + 8:xing + 12], "big")
    lame = xing + 8 + 4 + (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    packed = mp3[lame + 21:lame + 24]
    return frames, packed[0] << 4 | packed[1] >> 4, (packed[1] & 0x0F) << 8 | packed[2]
