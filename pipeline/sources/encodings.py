"""Bytes of a text or HTML file become text: a BOM is obeyed, UTF-8 is taken as it is, anything else is detected.

Pure functions over bytes already read; a guess below the confidence floor is a DocumentError, never mojibake.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import DocumentError

# A detected encoding must reach this confidence to be used. Every reading the detector finds unambiguous clears
# it (charset-normalizer keeps no reading messier than 0.2, so 1 - mess >= 0.8); a tie settled by the
# windows-1252 preference clears it from 32 bytes on (0.9 - mess); a sample under 32 bytes clears it only when
# unambiguous and clean; a tie between readings none of which is windows-1252 never does (at most 0.5).
CONFIDENCE_FLOOR = 0.75
# charset-normalizer's own small-sample rule (its chardet-compatible detect() lowers confidence by 0.2 below this).
SMALL_SAMPLE_BYTES = 32
SMALL_SAMPLE_PENALTY = 0.2
# Readings whose mess ratio is within TIE_MESS of the cleanest one, and whose language coherence is within
# TIE_COHERENCE of the most coherent of those, are ties: the detector cannot tell them apart.
TIE_MESS = 0.01
TIE_COHERENCE = 0.1
# A tie settled by preferring windows-1252 is still a guess, so it costs this much confidence.
PREFERENCE_PENALTY = 0.1
# Detection judges the first 64 KiB (cut after a space or newline, which is never the middle of a multi-byte
# character); the whole file is then decoded once, so a later byte that contradicts the guess still fails it.
MAX_DETECTION_BYTES = 64 * 1024

Method = Literal["utf-8", "bom", "declared", "detected"]

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),  # before UTF-16: FF FE 00 00
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# The WHATWG prescan, simplified: a <meta charset> or http-equiv Content-Type in the first 1024 bytes.
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
# What readers of the sidecar expect to see, for Python's codec names.
_LABELS = {"cp1250": "windows-1250", "cp1251": "windows-1251", "cp1252": "windows-1252", "cp1253": "windows-1253",
           "cp1254": "windows-1254", "cp1255": "windows-1255", "cp1256": "windows-1256", "cp1257": "windows-1257",
           "cp1258": "windows-1258", "latin_1": "iso-8859-1", "utf_8": "utf-8", "cp932": "shift_jis",
           "cp949": "euc-kr", "gb18030": "gb18030", "big5": "big5", "koi8_r": "koi8-r", "koi8_u": "koi8-u"}


@dataclass(frozen=True, slots=True)
class Decoded:
    """Text, the encoding it was read in, how that was decided, and (when detected) the detector's confidence."""

    text: str
    encoding: str
    method: Method
    confidence: float | None = None

    def meta(self) -> dict[str, str]:
        """What the sidecar records: nothing for plain UTF-8, else the encoding, how, and the confidence."""
        if self.method == "utf-8":
            return {}
        found = {"encoding": self.encoding, "encoding_source": self.method}
        if self.confidence is not None:
            found["encoding_confidence"] = f"{self.confidence:.2f}"
        return found


def label(codec: str) -> str:
    """The usual name of a Python codec (windows-1252 for cp1252, iso-8859-2 for iso8859_2)."""
    name = codecs.lookup(codec).name.replace("-", "_")
    if name in _LABELS:
        return _LABELS[name]
    if match := re.fullmatch(r"iso8859_(\d+)", name):
        return f"iso-8859-{match.group(1)}"
    return name.replace("_", "-")


def decode(data: bytes, *, html: bool = False) -> Decoded:
    """The text of a file's bytes: by its BOM, as UTF-8, (HTML) by its declared charset, else by detection."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return Decoded(data[len(bom):].decode(codec), label(codec), "bom", 1.0)
            except UnicodeDecodeError as exc:
                raise DocumentError(f"file has a {label(codec)} byte order mark but does not decode as "
                                    f"{label(codec)}: {exc.reason} at offset {exc.start + len(bom)}") from exc
    if b"\x00" in data[:8192]:
        raise DocumentError("binary data, not text (contains NUL bytes)")
    try:
        return Decoded(data.decode("utf-8"), "utf-8", "utf-8")
    except UnicodeDecodeError as exc:
        not_utf8 = f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
    if html and (declared := declared_charset(data)) is not None:
        try:
            return Decoded(data.decode(declared), label(declared), "declared")
        except UnicodeDecodeError:
            pass  # the declaration is wrong; what the bytes say is the better witness
    return detect(data, not_utf8)


def declared_charset(data: bytes) -> str | None:
    """The codec an HTML page declares in its first 1024 bytes (meta charset, or an XML declaration), if Python
    knows it; UTF-16 declarations are ignored, as browsers do for bytes that reached here without a BOM."""
    head = data[:1024]
    match = _XML_ENCODING.match(head.lstrip()) or _META_CHARSET.search(head)
    if match is None:
        return None
    try:
        codec = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    return None if codec.startswith(("utf-16", "utf-32")) else codec


def detect(data: bytes, not_utf8: str) -> Decoded:
    """Detect the encoding (charset-normalizer); below CONFIDENCE_FLOOR a DocumentError whose reason starts with
    not_utf8 and names the best guess."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(_sample(data)))
    if not matches:
        raise DocumentError(f"{not_utf8}, and no encoding reads it as text")
    cleanest = min(match.chaos for match in matches)
    clean = [match for match in matches if match.chaos <= cleanest + TIE_MESS]
    coherent = max(match.coherence for match in clean)
    ties = [match for match in clean if match.coherence >= coherent - TIE_COHERENCE]
    western = next((match for match in ties if "cp1252" in match.could_be_from_charset), None)
    if len(ties) == 1:
        # A reading windows-1252 gives too (the same text) is named so: that is what the file was written in.
        chosen, confidence = ties[0], 1.0 - ties[0].chaos
        codec = "cp1252" if chosen is western else chosen.encoding
    elif western is not None:
        # The detector cannot tell these readings apart; windows-1252 is what such a file almost always is (the
        # WHATWG Encoding Standard's fallback for Western locales, for the same reason).
        chosen, codec, confidence = western, "cp1252", 1.0 - western.chaos - PREFERENCE_PENALTY
    else:
        chosen = ties[0]
        codec, confidence = chosen.encoding, (1.0 - chosen.chaos) / len(ties)
    if len(data) < SMALL_SAMPLE_BYTES:
        confidence -= SMALL_SAMPLE_PENALTY
    confidence = max(0.0, round(confidence, 2))
    if confidence < CONFIDENCE_FLOOR:
        rivals = ", ".join(label(match.encoding) for match in ties[:4] if match is not chosen)
        raise DocumentError(
            f"{not_utf8}, and its encoding cannot be told: the best guess, {label(codec)}, has confidence "
            f"{confidence:.2f}, under the {CONFIDENCE_FLOOR:.2f} floor"
            + (f" (as likely: {rivals})" if rivals else "") + (" and the file is very short" if len(data) <
                                                               SMALL_SAMPLE_BYTES else ""))
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:  # detection read a sample; the rest of the file says otherwise
        raise DocumentError(f"{not_utf8}, and it is not {label(codec)} either (byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start})") from exc
    return Decoded(text, label(codec), "detected", confidence)


def _sample(data: bytes) -> bytes:
    if len(data) <= MAX_DETECTION_BYTES:
        return data
    head = data[:MAX_DETECTION_BYTES]
    cut = max(head.rfind(b"\n"), head.rfind(b" "))
    return head[:cut + 1] if cut > MAX_DETECTION_BYTES // 2 else head
