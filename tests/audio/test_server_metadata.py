"""A server's metadata never survives into OUT/: its tags, comments, pictures, foreign chunks and trailing bytes are
dropped where its audio becomes an OUT file (format-direct's publish_encoded, and the WAV written as it came), while
the samples stay exactly the server's (decoded by the ffmpeg binary itself, never by pipeline/)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import imageio_ffmpeg
import mutagen
import pytest
from mutagen.apev2 import APEv2
from mutagen.flac import Picture
from mutagen.id3 import ID3, TIT2, TXXX
from mutagen.ogg import OggPage

from pipeline.audio.publish import PublishOptions, publish, publish_encoded
from pipeline.models import Document, FollowUpAnswer, RunSettings, SpokenSummary
from pipeline.outputs import write_document_outputs

SECRET = b"sk-test-SECRET123456"  # what a server (or a proxy before it) might write into a file's metadata
TAGS = {"title": "Harbour bridge reopens", "artist": "audiosum", "comment": "Spoken summary made by audiosum"}
# Three seconds of a tone under noise at 24 kHz mono: noise makes FLAC code real residuals, not a trivial predictor.
SOURCE = ("-f", "lavfi", "-i", "sine=f=220:d=3:r=24000", "-f", "lavfi", "-i", "anoisesrc=d=3:r=24000:a=0.05:seed=7",
          "-filter_complex", "amix=inputs=2", "-ac", "1")
ENCODERS = {"wav": ("-c:a", "pcm_s16le", "-f", "wav"), "mp3": ("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"),
            "opus": ("-c:a", "libopus", "-b:a", "32k", "-f", "opus"), "flac": ("-c:a", "flac", "-f", "flac")}


def _ffmpeg(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", *args],
                          input=data, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The same sound in each container, made by the ffmpeg binary with no metadata of its own (into a file, so
    the MP3's Info header is completed)."""
    folder = tmp_path_factory.mktemp("clean")
    files = {}
    for fmt, codec in ENCODERS.items():
        _ffmpeg(*SOURCE, "-map_metadata", "-1", "-fflags", "+bitexact", *codec, str(folder / f"clean.{fmt}"))
        files[fmt] = (folder / f"clean.{fmt}").read_bytes()
    files["png"] = _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=8x8", "-frames:v", "1", "-c:v", "png", "-f", "image2",
                           "pipe:1")  # cover art a FLAC's PICTURE block can carry
    return files


RATE = 48_000


def _samples(data: bytes) -> bytes:
    """What the ffmpeg binary decodes from a file (its own probing, no hint), as 48 kHz mono: what a listener hears."""
    return _ffmpeg("-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", str(RATE), "pipe:1", data=data)


def _seconds(data: bytes) -> float:
    return len(_samples(data)) / 2 / RATE


def _le32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _vorbis_comment() -> bytes:
    """A Vorbis comment block with the secret as its vendor and in a comment."""
    comment = b"COMMENT=" + SECRET
    return _le32(len(SECRET)) + SECRET + _le32(1) + _le32(len(comment)) + comment


def _id3v1() -> bytes:
    return b"TAG" + SECRET.ljust(30, b"\0") + bytes(30) + bytes(30) + b"2025" + SECRET.ljust(30, b"\0") + b"\xff"


def _id3v2() -> bytes:
    """An ID3v2.3 tag holding one TIT2 frame with the secret."""
    frame = b"\x00" + SECRET
    body = b"TIT2" + len(frame).to_bytes(4, "big") + b"\0\0" + frame
    size = len(body)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + body


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + _le32(len(body)) + body + b"\0" * (len(body) & 1)


def _riff_chunks(data: bytes) -> list[bytes]:
    names, at = [], 12
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4:at + 8], "little")
        names.append(data[at:at + 4])
        at += 8 + size + (size & 1)
    return names


def hostile_wav(clean: bytes) -> bytes:
    """LIST/INFO and id3 chunks before and after the data, and bytes after the RIFF form (a WAV reader reads past
    all of them)."""
    assert _riff_chunks(clean) == [b"fmt ", b"data"]
    fmt_size = int.from_bytes(clean[16:20], "little")
    fmt, data = clean[20:20 + fmt_size], clean[20 + fmt_size + 8:]
    info = b"INFO" + _chunk(b"ISFT", SECRET + b"\0") + _chunk(b"ICMT", b"key " + SECRET + b"\0")
    body = (b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"LIST", info) + _chunk(b"data", data)
            + _chunk(b"id3 ", _id3v2()))
    return b"RIFF" + _le32(len(body)) + body + b"trailing " + SECRET


def hostile_mp3(clean: bytes, folder: Path, trailing: bool) -> bytes:
    """ID3v2 in front; APEv2, Lyrics3v2 and ID3v1 after the last frame; trailing: and junk after those."""
    path = folder / "hostile.mp3"
    path.write_bytes(clean)
    id3 = ID3()
    id3.add(TIT2(encoding=3, text=[SECRET.decode()]))
    id3.add(TXXX(encoding=3, desc="key", text=[SECRET.decode()]))
    id3.save(path)
    ape = APEv2()
    ape["Comment"] = SECRET.decode()
    ape.save(path)
    lyrics = b"LYRICSBEGIN" + b"LYR" + f"{len(SECRET):05d}".encode() + SECRET
    lyrics += f"{len(lyrics):06d}".encode() + b"LYRICS200"
    return path.read_bytes() + lyrics + _id3v1() + (b"junk " + SECRET if trailing else b"")


def hostile_opus(clean: bytes, trailing: bool) -> bytes:
    """The secret past OpusHead's fields, as OpusTags' vendor, in a comment and in the binary data after them;
    trailing: in a second logical stream, and after the end of the stream."""
    source = io.BytesIO(clean)
    pages = []
    while source.tell() < len(clean):
        pages.append(OggPage(source))
    head, tags, audio = pages[0], pages[1], pages[2:]
    assert tags.packets[0].startswith(b"OpusTags") and tags.complete and not audio[0].continued
    head.packets = [head.packets[0] + SECRET]
    tags.packets = [b"OpusTags" + _vorbis_comment() + b"\x01" + SECRET]  # LSB 1: data a tagger must keep
    if not trailing:
        return b"".join(page.write() for page in pages)
    other = OggPage()
    other.serial, other.first, other.last, other.packets = head.serial ^ 0x5A5A5A5A, True, True, [SECRET]
    return b"".join(page.write() for page in [head, other, tags, *audio]) + b"junk " + SECRET


def hostile_flac(clean: bytes, png: bytes, trailing: bool) -> bytes:
    """ID3v2 in front; the secret in STREAMINFO's MD5, APPLICATION, VORBIS_COMMENT and PICTURE blocks; trailing:
    and ID3v1, APEv2 and junk after the last frame."""
    assert clean[:4] == b"fLaC"
    at, last, streaminfo = 4, False, b""
    while not last:
        last, code, size = bool(clean[at] & 0x80), clean[at] & 0x7F, int.from_bytes(clean[at + 1:at + 4], "big")
        if code == 0:
            streaminfo = clean[at + 4:at + 4 + size]
        at += 4 + size
    frames = clean[at:]
    picture = Picture()
    picture.type, picture.mime, picture.desc, picture.data = 3, "image/png", SECRET.decode(), png
    blocks = [(0, streaminfo[:18] + SECRET[:16]), (2, b"TEST" + SECRET), (4, _vorbis_comment()),
              (6, picture.write()), (1, bytes(64))]
    metadata = b"".join(bytes([code | (0x80 if index == len(blocks) - 1 else 0)]) + len(body).to_bytes(3, "big")
                        + body for index, (code, body) in enumerate(blocks))
    after = _id3v1() + b"APETAGEX" + SECRET + b"junk " + SECRET if trailing else b""
    return _id3v2() + b"fLaC" + metadata + frames + after


def _no_secret(data: bytes) -> None:
    assert SECRET not in data
    assert SECRET[:16] not in data  # as much of it as fits STREAMINFO's MD5
    assert b"SECRET" not in data


@pytest.mark.parametrize("trailing", [False, True], ids=["metadata", "and-trailing-bytes"])
@pytest.mark.parametrize("fmt", ["mp3", "opus", "flac"])
def test_format_direct_keeps_the_servers_audio_and_none_of_its_metadata(fmt: str, trailing: bool,
                                                                        clean: dict[str, bytes],
                                                                        tmp_path: Path) -> None:
    """Metadata alone decodes (so it used to be published as it came); trailing bytes and a foreign logical stream
    made the decode fail the document instead, and are dropped now too."""
    hostile = {"mp3": lambda: hostile_mp3(clean["mp3"], tmp_path, trailing),
               "opus": lambda: hostile_opus(clean["opus"], trailing),
               "flac": lambda: hostile_flac(clean["flac"], clean["png"], trailing)}[fmt]()
    assert SECRET in hostile
    published = publish_encoded(hostile, PublishOptions(format=fmt, loudness_lufs=None, tags=TAGS))
    _no_secret(published.data)
    # Never re-encoded: the very samples of the server's file, so the same length too.
    assert _samples(published.data) == _samples(clean[fmt])
    assert published.duration_s == pytest.approx(_seconds(clean[fmt]), abs=0.005)
    path = tmp_path / f"published.{fmt}"
    path.write_bytes(published.data)
    tags = mutagen.File(path)
    if fmt == "mp3":
        assert str(tags["TIT2"]) == TAGS["title"] and published.data[-128:-125] != b"TAG"
    else:
        assert sorted(tags.tags) == sorted((key.upper(), value) for key, value in TAGS.items())  # ours alone
    if fmt == "flac":
        assert tags.pictures == [] and {block.code for block in tags.metadata_blocks} <= {0, 1, 4}


def test_a_wav_written_as_it_came_keeps_only_fmt_and_data(clean: dict[str, bytes], tmp_path: Path) -> None:
    """The default path (--format wav, no loudness): the answer's WAV and each follow-up's go to OUT/ unencoded."""
    hostile = hostile_wav(clean["wav"])
    assert _samples(hostile) == _samples(clean["wav"])  # ffmpeg reads past the chunks: the same sound
    summary = SpokenSummary(wav=hostile, transcript="The harbour bridge reopens.", sample_rate=24000, duration_s=3.0,
                            provider="openai", model="gpt-audio", voice="alloy",
                            followups=(FollowUpAnswer(question="When?", transcript="On Monday.", wav=hostile,
                                                      duration_s=3.0),))
    document = Document(id="bridge", source="bridge.txt", text="The bridge reopens.", sha256="0" * 64)
    settings = RunSettings(inputs=("bridge.txt",), out_dir=tmp_path, provider="openai")
    files = write_document_outputs(tmp_path, document, summary, settings, ours=lambda name: True)
    for written in (files.main, *files.followups):
        data = (tmp_path / written.name).read_bytes()
        _no_secret(data)
        assert _riff_chunks(data) == [b"fmt ", b"data"]
        assert int.from_bytes(data[4:8], "little") == len(data) - 8  # nothing after the RIFF form
        assert _samples(data) == _samples(clean["wav"])


@pytest.mark.parametrize(("fmt", "loudness"), [("wav", -16.0), ("mp3", None)])
def test_a_wav_encoded_or_normalised_carries_none_of_its_chunks(fmt: str, loudness: float | None,
                                                                 clean: dict[str, bytes], tmp_path: Path) -> None:
    """publish() re-encodes from the samples alone (ffmpeg's -map_metadata -1): only audiosum's own tags are there.
    A guard on the other path, not a regression test: it held before the format-direct and as-it-came fix too."""
    published = publish(hostile_wav(clean["wav"]), PublishOptions(format=fmt, loudness_lufs=loudness, tags=TAGS))
    _no_secret(published.data)
    path = tmp_path / f"published.{fmt}"
    path.write_bytes(published.data)
    assert str(mutagen.File(path)["TIT2"]) == TAGS["title"]  # mutagen reads a WAV's id3 chunk as its tags
    assert published.duration_s == pytest.approx(_seconds(clean["wav"]), abs=0.005)
