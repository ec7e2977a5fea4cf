"""Which container audio bytes hold: sniffed from the first bytes, checked against their name and for a cut end.

Reads only a file's head and tail: never decodes (decode.py does) and never runs ffmpeg.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.audio.wav import riff_chunks
from pipeline.errors import InvalidAudio

# What a file name claims -> the container its bytes must hold.
_CONTAINER_BY_SUFFIX = {".wav": "wav", ".wave": "wav", ".mp3": "mp3", ".ogg": "ogg", ".oga": "ogg",
                        ".opus": "ogg", ".flac": "flac", ".m4a": "mp4"}
# The ffmpeg demuxer for a container where its name differs.
_DEMUXER = {"mp4": "mov"}
_HEAD_BYTES = 1 << 16
_OGG_TAIL_BYTES = 27 + 255 + 255 * 255  # the largest Ogg page there can be
_ID3_READ_CAP = 16 << 20  # cover art past this is not read to find what follows the tag


def demuxer_for(suffix: str) -> str | None:
    """The ffmpeg input format a file name implies (".m4a" -> "mov"), or None for a name audiosum does not know."""
    kind = _CONTAINER_BY_SUFFIX.get(suffix.lower())
    return _DEMUXER.get(kind, kind) if kind else None


def sniff_container(head: bytes) -> str | None:
    """'wav', 'mp3', 'ogg', 'flac' or 'mp4' (.m4a) from a file's first bytes; None when it is none of them."""
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" and len(head) >= 10:
        # An ID3v2 tag may front an MP3 or, rarely, a FLAC stream.
        size = id3_tag_size(head)
        return "flac" if head[size:size + 4] == b"fLaC" else "mp3"
    if _mpeg_layer3_header(head[:4]):
        return "mp3"
    return None


def _mpeg_layer3_header(header: bytes) -> bool:
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return False
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate, rate = header[2] >> 4, (header[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def _read_head(data: bytes | Path) -> tuple[bytes, bytes, int]:
    """(first bytes, last bytes, size) of the audio without reading a whole file into memory."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        head = data[:_HEAD_BYTES]
        # An ID3 tag (cover art) can be long; look past it for what follows.
        if head[:3] == b"ID3":
            head = data[:_HEAD_BYTES + min(id3_tag_size(head), _ID3_READ_CAP)]
        return head, data[-_OGG_TAIL_BYTES:], len(data)
    try:
        if not stat.S_ISREG(os.stat(data).st_mode):
            raise InvalidAudio(f"{data} is not a regular file")
        with open(data, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
            if head[:3] == b"ID3":
                head += handle.read(min(id3_tag_size(head), _ID3_READ_CAP))
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - _OGG_TAIL_BYTES))
            tail = handle.read(_OGG_TAIL_BYTES)
    except OSError as exc:
        raise InvalidAudio(f"cannot read {data}: {exc.strerror or exc}") from exc
    return head, tail, size


def id3_tag_size(head: bytes) -> int:
    """Bytes an ID3v2 tag at the start of head takes (header, syncsafe size, footer when flagged); 0 for none."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
    return size + 10 if head[5] & 0x10 else size


def _container(data: bytes | Path, suffix: str | None) -> str:
    """The container to force on ffmpeg, after checking the bytes against what their name claims."""
    head, tail, size = _read_head(data)
    if size == 0:
        raise InvalidAudio("empty file (0 bytes)")
    kind = sniff_container(head)
    if suffix is None and isinstance(data, Path):
        suffix = data.suffix
    claimed = _CONTAINER_BY_SUFFIX.get((suffix or "").lower())
    if kind is None:
        what = f"named {suffix} but" if claimed else "it"
        raise InvalidAudio(f"not audio audiosum can read: {what} is not WAV, MP3, Ogg, FLAC or M4A "
                           f"(starts with {head[:8].hex(' ')})")
    if claimed is not None and claimed != kind:
        raise InvalidAudio(f"named {suffix} but holds {kind.upper()} data")
    if (suffix or "").lower() == ".opus" and b"OpusHead" not in head[:128]:
        raise InvalidAudio("named .opus but the Ogg stream is not Opus")
    problem = _ogg_end_problem(tail) if kind == "ogg" else _wav_end_problem(head, size) if kind == "wav" else None
    if problem:
        raise InvalidAudio(problem)
    return kind


def _wav_end_problem(head: bytes, size: int) -> str | None:
    """A WAV whose data chunk promises more bytes than the file holds was cut short (streamed sizes excepted)."""
    for name, declared, body in riff_chunks(head):
        if name == b"data":
            present = size - body
            if declared not in (0, 0xFFFFFFFF) and present < declared:
                return f"truncated WAV: its header promises {declared} bytes of audio but {present} are there"
            return None
    return None


def _ogg_end_problem(tail: bytes) -> str | None:
    """A complete Ogg stream ends with a whole page flagged end-of-stream; a cut one does not."""
    position = len(tail)
    while (position := tail.rfind(b"OggS", 0, position)) >= 0:
        page = tail[position:]
        if len(page) >= 27 and len(page) >= 27 + page[26]:
            body = sum(page[27:27 + page[26]])
            if 27 + page[26] + body == len(page):
                return None if page[5] & 0x04 else "truncated Ogg stream: its last page is not the end of the stream"
    return "truncated Ogg stream: the file ends inside a page"
