"""A server's audio file with only its audio kept: every tag, comment, picture, foreign chunk and trailing byte gone.

Pure functions on bytes (no ffmpeg, no files): they never re-encode, and never let a server's own text through.

A server's text (its tags, or a key it echoes back) must not reach OUT/, which `serve --feed` publishes. Each
container is rebuilt from what carries sound: a WAV is its fmt and data alone; an MP3 is its run of MPEG frames (no
ID3v1/v2, APEv2, Lyrics3, nor anything after the last frame); an Ogg Opus stream keeps its identification header
(cut to the fields it defines), an empty comment header and its audio pages up to the end of the stream (other
logical streams, chained links and trailing bytes dropped); a FLAC stream keeps STREAMINFO (its MD5, 16 bytes the
server chose, zeroed: 0 means "not computed") and its frames, up to where the last frame's checksum ends it.
audiosum's own tags are written afterwards (publish._write_tags).
"""

from __future__ import annotations

import io
import wave
from typing import Any

from pipeline.audio import id3_tag_size, wav_frames
from pipeline.errors import InvalidAudio

OPUS_VENDOR = b"audiosum"


def audio_only(data: bytes, container: str) -> bytes:
    """data (a 'wav', 'mp3', 'ogg' (Opus) or 'flac' file, as sniff_container names it) with nothing but its audio;
    InvalidAudio when no audio of that kind is found in it."""
    keep = {"wav": _wav, "mp3": _mp3, "ogg": _ogg_opus, "flac": _flac}.get(container)
    if keep is None:
        raise ValueError(f"no rule for keeping only the audio of {container!r}")
    return keep(data)


# --- WAV ------------------------------------------------------------------------------------------------------------

def _wav(data: bytes) -> bytes:
    """RIFF/WAVE with a 16-byte PCM fmt chunk and the whole frames of the data chunk: no LIST/INFO, id3, bext or
    other chunk, and nothing after the data."""
    info, pcm = wav_frames(data)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(info.channels)
        writer.setsampwidth(info.sample_width)
        writer.setframerate(info.sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


# --- MP3 ------------------------------------------------------------------------------------------------------------

# Layer III bit rates (kbit/s) by bitrate index, for MPEG-1 and for MPEG-2/2.5; sample rates by version bits.
_MP3_KBPS = {True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(data: bytes, at: int) -> tuple[int, int] | None:
    """(length, stream identity: version and rate bits) of the MPEG Layer III frame whose header is at `at`."""
    header = data[at:at + 4]
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate, rate, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return None
    mpeg1 = version == 3
    length = (144_000 if mpeg1 else 72_000) * _MP3_KBPS[mpeg1][bitrate] // _MP3_RATES[version][rate] + padding
    return length, header[1] & 0x18 | rate


def _mp3_sync(data: bytes, at: int, identity: int | None) -> int | None:
    """Where the next frame of the stream starts at or after `at`: a frame header followed by another of the same
    stream, or ending exactly at the end of the file (so stray 0xFF bytes in a tag or junk do not count)."""
    while (at := data.find(b"\xff", at)) >= 0:
        frame = _mp3_frame(data, at)
        if frame is not None and identity in (None, frame[1]):
            after = at + frame[0]
            following = _mp3_frame(data, after)
            if after == len(data) or (following is not None and following[1] == frame[1]):
                return at
        at += 1
    return None


def _mp3(data: bytes) -> bytes:
    """The MPEG frames (the Xing/Info frame among them), each whole, of the first stream; ID3v2 tags in front, and
    whatever is not a frame between or after them (APEv2, Lyrics3, ID3v1, junk), dropped."""
    at = 0
    while data[at:at + 3] == b"ID3" and (size := id3_tag_size(data[at:at + 10])):
        at += size
    runs: list[bytes] = []
    identity = None
    while (start := _mp3_sync(data, at, identity)) is not None:
        end = start
        while (frame := _mp3_frame(data, end)) is not None and end + frame[0] <= len(data):
            if identity is None:
                identity = frame[1]
            elif frame[1] != identity:
                break
            end += frame[0]
        runs.append(data[start:end])
        at = max(end, start + 1)
    if not runs:
        raise InvalidAudio("no MPEG audio frames found in the MP3")
    return b"".join(runs)


# --- Ogg Opus -------------------------------------------------------------------------------------------------------

def _opus_tags(vendor: bytes = OPUS_VENDOR) -> bytes:
    """An OpusTags packet (RFC 7845 5.2) with this vendor string and no comments."""
    return b"OpusTags" + len(vendor).to_bytes(4, "little") + vendor + (0).to_bytes(4, "little")


def _opus_head(packet: bytes) -> bytes:
    """The identification header cut to the fields RFC 7845 5.1 defines (19 bytes, plus the channel mapping table
    when the mapping family is not 0)."""
    if len(packet) < 19 or packet[:8] != b"OpusHead":
        raise InvalidAudio("the Ogg stream's first packet is not an Opus identification header")
    length = 19 if packet[18] == 0 else 21 + packet[9]
    if len(packet) < length:
        raise InvalidAudio("the Opus identification header is cut short")
    return packet[:length]


def _ogg_opus(data: bytes) -> bytes:
    """The first Opus logical stream, to its end-of-stream page: its identification header, an empty comment header
    and its audio pages as they were (renumbered when the comment header took more pages than the new one)."""
    from mutagen.ogg import OggPage  # mutagen parses and writes pages (CRC included); it is untyped

    pages = _opus_pages(data)
    head, tags_end = pages[0], 1
    # The comment header starts on the second page and ends a page of its own (RFC 7845 3): find that page.
    while tags_end < len(pages) and not pages[tags_end].complete:
        tags_end += 1
    tags, audio = pages[1:tags_end + 1], pages[tags_end + 1:]
    if (len(head.packets) != 1 or not head.complete or not tags or tags[0].continued
            or any(len(page.packets) != 1 for page in tags) or not tags[0].packets[0].startswith(b"OpusTags")
            or not all(page.continued for page in tags[1:]) or not tags[-1].complete):
        raise InvalidAudio("the Ogg Opus headers are not laid out as RFC 7845 requires")
    if not audio:
        raise InvalidAudio("the Ogg Opus stream holds no audio pages")
    head.packets = [_opus_head(head.packets[0])]
    comment = OggPage()
    comment.packets, comment.serial, comment.position = [_opus_tags()], head.serial, 0
    comment.sequence = head.sequence + 1
    shift = len(tags) - 1
    for page in audio:
        page.sequence -= shift
    return b"".join(page.write() for page in [head, comment, *audio])


def _opus_pages(data: bytes) -> list[Any]:  # mutagen.ogg.OggPage, untyped
    """The pages of the first Opus logical stream, its first to its end-of-stream page; pages of other streams,
    and bytes that are not an Ogg page (between pages, or after the end of the stream), skipped."""
    from mutagen.ogg import OggPage
    from mutagen.ogg import error as OggError

    pages = []
    source = io.BytesIO(data)
    serial = None
    at = 0
    while at < len(data):
        source.seek(at)
        try:
            page = OggPage(source)
        except (OggError, EOFError):
            at = data.find(b"OggS", at + 1)
            if at < 0:
                break
            continue
        at = source.tell()
        if serial is None and page.first and page.packets and page.packets[0].startswith(b"OpusHead"):
            serial = page.serial
        if page.serial != serial:
            continue
        pages.append(page)
        if page.last:
            return pages
    if not pages:
        raise InvalidAudio("no Opus stream found in the Ogg data")
    raise InvalidAudio("truncated Ogg stream: the Opus stream has no end-of-stream page")


# --- FLAC -----------------------------------------------------------------------------------------------------------

_FLAC_STREAMINFO = 0
_FLAC_BLOCK_SIZES = {1: 192, 2: 576, 3: 1152, 4: 2304, 5: 4608, **{code: 256 << (code - 8) for code in range(8, 16)}}
_FLAC_SAMPLE_SIZES = {1: 8, 2: 12, 4: 16, 5: 20, 6: 24, 7: 32}


def _flac(data: bytes) -> bytes:
    """fLaC, STREAMINFO (MD5 zeroed) as the only metadata block, then the frames up to the end of the last one;
    ID3v2 in front, every other metadata block (VORBIS_COMMENT, PICTURE, APPLICATION, CUESHEET, SEEKTABLE, PADDING)
    and anything after the last frame (ID3v1, APEv2, junk) dropped."""
    at = id3_tag_size(data[:10])
    if data[at:at + 4] != b"fLaC":
        raise InvalidAudio("not a FLAC stream (no fLaC marker)")
    at += 4
    streaminfo = None
    last = False
    while not last:
        if at + 4 > len(data):
            raise InvalidAudio("the FLAC metadata runs past the end of the file")
        last, kind, size = bool(data[at] & 0x80), data[at] & 0x7F, int.from_bytes(data[at + 1:at + 4], "big")
        if kind == _FLAC_STREAMINFO and streaminfo is None and size == 34:
            streaminfo = bytearray(data[at + 4:at + 4 + 34])
        at += 4 + size
    if streaminfo is None or len(streaminfo) != 34:
        raise InvalidAudio("the FLAC stream has no STREAMINFO")
    streaminfo[18:34] = bytes(16)
    end = _flac_end(data, at, bytes(streaminfo))
    return b"fLaC" + bytes([0x80 | _FLAC_STREAMINFO]) + (34).to_bytes(3, "big") + bytes(streaminfo) + data[at:end]


def _flac_end(data: bytes, first: int, streaminfo: bytes) -> int:
    """Where the last FLAC frame ends: the last frame header (from the end back) whose subframes, read through,
    end where its CRC-16 says the frame does."""
    channels, bps = ((streaminfo[12] >> 1) & 7) + 1, ((streaminfo[12] & 1) << 4 | streaminfo[13] >> 4) + 1
    max_frame = int.from_bytes(streaminfo[7:10], "big")
    if data[first:first + 2] not in (b"\xff\xf8", b"\xff\xf9"):
        raise InvalidAudio("the FLAC metadata is not followed by a frame")
    sync = data[first:first + 2]
    at = len(data)
    while (at := data.rfind(sync, first, at)) >= 0:
        end = _flac_frame_end(data, at, channels, bps, max_frame)
        if end is not None:
            return end
    raise InvalidAudio("no whole FLAC frame found")


def _flac_frame_end(data: bytes, at: int, channels: int, bps: int, max_frame: int) -> int | None:
    """The end of the FLAC frame at `at` if a whole, checksummed frame is there, else None."""
    header = _flac_header(data, at)
    if header is None:
        return None
    size, block, assignment, sample_size = header
    bps = _FLAC_SAMPLE_SIZES.get(sample_size, bps)
    count = assignment + 1 if assignment < 8 else 2
    if count != channels:
        return None
    # The side channel of a stereo decorrelation carries one bit more (left/side: 2nd, right/side: 1st, mid/side: 2nd).
    side = {8: 1, 9: 0, 10: 1}.get(assignment)
    # No frame is longer than its samples stored verbatim, plus headers (STREAMINFO's maximum when it is larger).
    longest = max(max_frame, block * count * (bps + 1) // 8 + 1024)
    bits = _Bits(data[at + size:at + longest])
    try:
        for channel in range(count):
            _skip_subframe(bits, block, bps + (channel == side))
    except (ValueError, IndexError):
        return None
    end = at + size + (bits.at + 7) // 8 + 2
    if end > len(data) or _crc16(data[at:end - 2]) != int.from_bytes(data[end - 2:end], "big"):
        return None
    return end


def _flac_header(data: bytes, at: int) -> tuple[int, int, int, int] | None:
    """(header length, block size, channel assignment, sample size code) of a FLAC frame header at `at` whose
    CRC-8 holds, else None."""
    head = data[at:at + 16]
    if len(head) < 6 or head[0] != 0xFF or head[1] & 0xFE != 0xF8:
        return None
    size_code, rate_code = head[2] >> 4, head[2] & 0x0F
    assignment, sample_size = head[3] >> 4, (head[3] >> 1) & 7
    if size_code == 0 or rate_code == 15 or assignment > 10 or sample_size == 3 or head[3] & 1:
        return None
    # The frame or sample number, UTF-8 style: the leading ones of its first byte say how many bytes follow.
    extra = 0
    while extra < 8 and head[4] & (0x80 >> extra):
        extra += 1
    if extra in (1, 8):
        return None
    position = 5 + max(extra - 1, 0)
    block = _FLAC_BLOCK_SIZES.get(size_code, 0)
    if size_code in (6, 7):
        width = size_code - 5
        block = int.from_bytes(head[position:position + width], "big") + 1
        position += width
    position += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if position >= len(head) or _crc8(head[:position]) != head[position]:
        return None
    return position + 1, block, assignment, sample_size


class _Bits:
    """A bit reader over bytes, most significant bit first (a string of '0' and '1': str.find reads unary codes)."""

    def __init__(self, data: bytes) -> None:
        self.bits = bin(int.from_bytes(b"\x01" + data, "big"))[3:]
        self.at = 0

    def read(self, count: int) -> int:
        end = self.at + count
        if end > len(self.bits):
            raise IndexError("past the end")
        value = int(self.bits[self.at:end], 2) if count else 0
        self.at = end
        return value

    def skip(self, count: int) -> None:
        self.at += count
        if self.at > len(self.bits):
            raise IndexError("past the end")

    def unary(self) -> int:
        """Zeros before the next one bit (which is consumed too)."""
        one = self.bits.index("1", self.at)
        count, self.at = one - self.at, one + 1
        return count


def _skip_subframe(bits: _Bits, block: int, bps: int) -> None:
    if bits.read(1):
        raise ValueError("subframe padding bit set")
    kind = bits.read(6)
    if bits.read(1):  # wasted bits per sample, unary coded
        bps -= bits.unary() + 1
    if bps <= 0:
        raise ValueError("no bits left per sample")
    if kind == 0:  # CONSTANT
        bits.skip(bps)
    elif kind == 1:  # VERBATIM
        bits.skip(bps * block)
    elif 8 <= kind <= 12:  # FIXED, order 0-4
        order = kind - 8
        bits.skip(order * bps)
        _skip_residual(bits, block, order)
    elif kind >= 32:  # LPC, order 1-32
        order = kind - 31
        bits.skip(order * bps)
        precision = bits.read(4) + 1
        if precision == 16:
            raise ValueError("invalid LPC precision")
        bits.skip(5 + order * precision)
        _skip_residual(bits, block, order)
    else:
        raise ValueError(f"reserved subframe type {kind}")


def _skip_residual(bits: _Bits, block: int, order: int) -> None:
    method = bits.read(2)
    if method > 1:
        raise ValueError("reserved residual coding method")
    parameter_bits = 4 + method
    escape = (1 << parameter_bits) - 1
    partition_order = bits.read(4)
    per_partition = block >> partition_order
    if per_partition << partition_order != block or per_partition < order:
        raise ValueError("residual partitions do not fit the block")
    text, at = bits.bits, bits.at
    for partition in range(1 << partition_order):
        samples = per_partition - (order if partition == 0 else 0)
        parameter = int(text[at:at + parameter_bits], 2)
        at += parameter_bits
        if parameter == escape:
            at += 5 + int(text[at:at + 5], 2) * samples
            continue
        find = text.index
        for _ in range(samples):
            at = find("1", at) + 1 + parameter
    if at > len(text):
        raise IndexError("past the end")
    bits.at = at


def _crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, initial 0), the FLAC frame header's checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    """CRC-16 (polynomial 0x8005, initial 0, not reflected), the FLAC frame's checksum."""
    crc = 0
    table = _CRC16
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


__all__ = ["audio_only"]
