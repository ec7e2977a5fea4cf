"""How long speech of a given transcript can plausibly last, at what sample rates, and how many bytes its audio can
take: a server's audio is judged against its own words before anything hears, measures or stores it.

Arithmetic on durations and counts, and a container's headers read (mutagen); decodes nothing.
"""

from __future__ import annotations

import io
from typing import Any

# The API speaks 0.25x to 4x a normal pace (CreateSpeechRequest.speed): down to about 0.6 words a second. The
# bound is wider (pauses, a slow voice, numbers read out), plus a few seconds of silence at either end.
MAX_SECONDS_PER_WORD = 2.5
SLACK_S = 10.0
# Scripts without spaces (Chinese, Japanese, Thai) count as one word per this many characters.
CHARS_PER_WORD = 6
# Speech APIs answer at 16, 22.05, 24, 44.1 or 48 kHz; a rate outside 8–48 kHz is not speech audio.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
# The most bytes a second of a speech answer takes: 48 kHz 16-bit mono PCM (compressed formats take less).
MAX_BYTES_PER_SECOND = MAX_SAMPLE_RATE * 2
MAX_TEXT_ANSWER_BYTES = 4 * 1024 * 1024  # a text-only answer (a summary, a part summary) of any sane length
_ENVELOPE_BYTES = 1024 * 1024  # JSON around the audio: transcript, ids, usage


def spoken_units(text: str) -> float:
    """The words of text, counting a run of characters in a script without spaces as words of CHARS_PER_WORD."""
    return max(float(len(text.split())), len(text) / CHARS_PER_WORD)


def longest_s(words: float) -> float:
    """The longest plausible speech of `words` words."""
    return words * MAX_SECONDS_PER_WORD + SLACK_S


def longest_answer_units(words: float) -> float:
    """The most words an answer asked for `words` words may plausibly have: models overshoot, not fourfold."""
    return 4 * words + 50


def implausible(duration_s: float, sample_rate: int | None, transcript: str) -> str | None:
    """Why audio of this length (and sample rate, when known) cannot be `transcript` spoken, or None when it can."""
    if sample_rate is not None and not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        return f"a sample rate of {sample_rate} Hz is not speech audio ({MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
    if not duration_s > 0:
        return "the audio is empty"
    longest = longest_s(spoken_units(transcript))
    if duration_s > longest:
        return (f"{duration_s:.0f} s of audio for a transcript of {len(transcript.split())} words "
                f"(at most {longest:.0f} s)")
    # Audio shorter than its words is not judged: it costs nothing to hear or keep, and a compatible server's test
    # voice (a tone, a beep per part) is legitimately brief.
    return None


def answer_bytes(words: float, *, base64: bool) -> int:
    """The most bytes a spoken answer of about `words` words may take on the wire (base64: inside a JSON answer)."""
    raw = longest_s(words) * MAX_BYTES_PER_SECOND
    return int(raw * 4 / 3 if base64 else raw) + _ENVELOPE_BYTES


def declared_duration(data: bytes, container: str) -> float | None:
    """The length an mp3, ogg (Opus) or flac file's headers declare (mutagen: no decode), or None when they declare
    none. A header can lie; what hears or measures the audio still bounds its decode."""
    from mutagen import MutagenError
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.oggopus import OggOpus

    kinds = {"mp3": MP3, "ogg": OggOpus, "flac": FLAC}
    if container not in kinds:
        return None
    try:
        info: Any = kinds[container](io.BytesIO(data)).info  # mutagen is untyped
        length = info.length
    except (MutagenError, ValueError, EOFError, OverflowError, ZeroDivisionError):
        return None
    # 0: not declared (a FLAC written to a pipe cannot go back to fill in its length)
    return float(length) if isinstance(length, (int, float)) and length > 0 else None
