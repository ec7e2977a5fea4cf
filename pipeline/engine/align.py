"""Caption times from the audio itself: a known transcript aligned to what the offline recogniser hears in it.

For audio whose words are known but whose timing is not (the API's `message.audio.transcript` and its WAV). The
recording is heard with word timestamps (pipeline.engine.listen, the bundled Whisper tiny.en, in bounded 30 s
windows), the transcript's words are matched to the heard words (difflib on normalised words), words that were not
heard get times interpolated between their matched neighbours, and the words are grouped into the transcript's
sentences. When too few words match (a wrong transcript, music, another language) or the recording cannot be
heard, the cues are today's estimate instead (sentence length in proportion to the duration: estimated_cues) and
`reason` says why.

CPU-bound (Whisper runs at about 10-15x real time on two cores, plus a second for the model's first load):
callers run align() in a worker process or thread, never on an event loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Literal

from pipeline.audio import plausible
from pipeline.engine import listen
from pipeline.errors import AudiosumError, InvalidAudio

Cue = tuple[float, float, str]  # (start s, end s, text)

MIN_MATCHED = 0.5  # below this share of the transcript's words heard, the alignment is not trusted
LEAD_S = 0.1  # a sentence's cue starts this much before its first word is heard (never before the previous word)
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty")
_NUMBERS = {w: str(i) for i, w in enumerate(_NUMBER_WORDS.split(" "))}


@dataclass(frozen=True, slots=True)
class Alignment:
    """Cues for a transcript's sentences and words. method "aligned": times from the recognised words; "estimated":
    sentence times in proportion to their length, no word cues, and `reason` says why the alignment was not used.
    `matched` is the share of the transcript's words the recogniser heard (0 when it could not hear at all)."""

    sentence_cues: tuple[Cue, ...]
    word_cues: tuple[Cue, ...]
    method: Literal["aligned", "estimated"]
    reason: str | None = None
    matched: float = 0.0
    duration_s: float = 0.0


def split_sentences(transcript: str) -> list[str]:
    """The transcript's sentences, as the engine splits text (pipeline.engine.text.sentences)."""
    from pipeline.engine.text import sentences

    return [sentence.text for sentence in sentences(transcript)]


def estimated_cues(sentences: Sequence[str], duration_s: float) -> tuple[Cue, ...]:
    """Sentence cues timed in proportion to their length: the estimate for audio that came with no timing (the
    same rule as pipeline.outputs.podcast.estimated_cues, which splits a transcript on stops first)."""
    total = sum(len(s) for s in sentences) or 1
    cues, start = [], 0.0
    for sentence in sentences:
        end = start + duration_s * len(sentence) / total
        cues.append((round(start, 3), round(end, 3), sentence))
        start = end
    return tuple(cues)


def estimated_transcript_cues(transcript: str, duration_s: float) -> tuple[Cue, ...]:
    """podcast.estimated_cues's split (on sentence stops) and timing, for callers that have only a transcript."""
    return estimated_cues([s for s in _SENTENCE_END.split(transcript.strip()) if s], duration_s)


def normalise(word: str) -> str:
    """A word as both sides are compared: lower case, letters and digits only, number words up to twenty as digits."""
    folded = "".join(_WORD.findall(word.lower().replace("’", "'").replace("'", "")))
    return _NUMBERS.get(folded, folded)


def align(wav: bytes | Path, transcript: str, *, language: str = "en", sentences: Sequence[str] | None = None,
          suffix: str | None = None) -> Alignment:
    """Sentence and word cues for `transcript` as spoken in `wav` (any format pipeline.audio decodes).

    sentences: the transcript's sentences when the caller knows them (a narration's); else split_sentences().
    Does not raise for a recording the recogniser cannot hear (a language other than English, weights missing, a
    recogniser failure) or a transcript that does not match: it falls back to the estimate with the reason.
    InvalidAudio (or AudioToolFailed) only when the recording cannot be decoded at all: no duration to time from.
    CPU-heavy (it runs Whisper over the whole recording, a little slower than plain transcription): call it from a
    worker process or thread, never on an event loop.
    """
    said = list(sentences) if sentences is not None else split_sentences(transcript)
    # Never more hearing than the transcript can take to say: audio that claims hours for a sentence (a server's
    # answer) is InvalidAudio after one decode, not hours of Whisper.
    longest = plausible.longest_s(plausible.spoken_units(transcript))
    try:
        heard = listen.transcribe(wav, suffix=suffix, language=language, word_timings=True, max_seconds=longest)
    except InvalidAudio:
        raise
    except (AudiosumError, ImportError, RuntimeError) as exc:  # not heard: time the sentences by length instead
        from pipeline.audio import duration_of

        duration = duration_of(wav, suffix=suffix, max_seconds=longest)
        return Alignment(estimated_cues(said, duration), (), "estimated", f"not recognised: {exc}", 0.0, duration)
    return align_words(said, heard.words, heard.duration_s)


def align_words(sentences: Sequence[str], heard: Sequence[listen.Timed], duration_s: float) -> Alignment:
    """align() after recognition: the sentences' words matched to `heard` (start, end, word) in a recording of
    duration_s seconds."""
    tokens = _tokens(sentences)
    wanted = [normalise(token) for _, token in tokens]
    got = [normalise(word) for _, _, word in heard]
    if not tokens:
        return Alignment(estimated_cues(sentences, duration_s), (), "estimated", "the transcript has no words", 0.0,
                         duration_s)
    times: list[tuple[float, float] | None] = [None] * len(tokens)
    matcher = SequenceMatcher(None, wanted, got, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            start, end, _ = heard[block.b + k]
            times[block.a + k] = (start, end)
    matched = sum(1 for t in times if t is not None) / len(tokens)
    if matched < MIN_MATCHED:
        if not heard:
            why = "the recogniser heard no speech"
        else:
            why = (f"only {matched:.0%} of the transcript's {len(tokens)} words were heard in the audio "
                   f"(at least {MIN_MATCHED:.0%} needed)")
        return Alignment(estimated_cues(sentences, duration_s), (), "estimated", why, matched, duration_s)
    filled = _interpolate(times, [len(token) for _, token in tokens], duration_s)
    words = tuple((round(a, 3), round(b, 3), token) for (a, b), (_, token) in zip(filled, tokens))
    return Alignment(_sentence_cues(sentences, tokens, filled, duration_s), words, "aligned", None, matched,
                     duration_s)


def regroup(alignment: Alignment, sentences: Sequence[str]) -> tuple[Cue, ...]:
    """Sentence cues for another split of the same transcript into sentences (the word cues are reused; nothing is
    heard again); () when the alignment was estimated or the words differ."""
    tokens = _tokens(sentences)
    if alignment.method != "aligned" or [t for _, t in tokens] != [w for _, _, w in alignment.word_cues]:
        return ()
    return _sentence_cues(sentences, tokens, [(a, b) for a, b, _ in alignment.word_cues], alignment.duration_s)


def _tokens(sentences: Sequence[str]) -> list[tuple[int, str]]:
    """(sentence index, the word as written) for every word; a dash or other mark on its own travels with the word
    before it in the same sentence."""
    tokens: list[tuple[int, str]] = []
    for index, sentence in enumerate(sentences):
        for token in sentence.split():
            if normalise(token) or not tokens or tokens[-1][0] != index:
                tokens.append((index, token))
            else:
                tokens[-1] = (index, f"{tokens[-1][1]} {token}")
    return tokens


def _interpolate(times: list[tuple[float, float] | None], chars: list[int],
                 duration_s: float) -> list[tuple[float, float]]:
    """Times for every word: heard words keep theirs (made monotonic); a run of unheard words shares the gap between
    its heard neighbours by length; a run at either end is spoken at the heard words' pace next to its neighbour."""
    heard = [(i, t) for i, t in enumerate(times) if t is not None]
    heard_chars = sum(chars[i] for i, _ in heard) or 1
    heard_s = sum(end - start for _, (start, end) in heard)
    pace = max(0.03, min(0.12, heard_s / heard_chars))  # seconds per character of the heard words
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(times)
    last = 0.0
    for i, (start, end) in heard:  # monotonic: a word never starts before the one before it ends
        start = max(start, last)
        out[i] = (start, max(start, end))
        last = out[i][1]
    runs: list[tuple[int, int]] = []  # [first, last] of each run of unheard words
    i = 0
    while i < len(times):
        if times[i] is None:
            j = i
            while j + 1 < len(times) and times[j + 1] is None:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    for first, final in runs:
        length = sum(chars[first: final + 1])
        before = out[first - 1][1] if first > 0 else None
        after = out[final + 1][0] if final + 1 < len(times) else None
        if before is None and after is None:
            before, after = 0.0, duration_s
        elif before is None:
            before = max(0.0, after - pace * length)  # type: ignore[operator]
        elif after is None:
            after = min(max(duration_s, before), before + pace * length)
        assert before is not None and after is not None
        at = before
        for k in range(first, final + 1):
            step = (after - before) * chars[k] / (length or 1)
            out[k] = (at, at + step)
            at += step
    return out


def _sentence_cues(sentences: Sequence[str], tokens: list[tuple[int, str]], times: list[tuple[float, float]],
                   duration_s: float) -> tuple[Cue, ...]:
    """Each sentence from just before its first word to the next sentence's start (the last to the end), as the
    offline engine's synthesis cues run; a sentence without words gets no time of its own."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for position, (index, _) in enumerate(tokens):
        first.setdefault(index, position)
        last[index] = position
    starts: list[float] = []
    for index in range(len(sentences)):
        if index == 0:
            starts.append(0.0)  # the first caption shows from the start, as the synthesis cues do
        elif index in first:
            begin = times[first[index]][0]
            previous_end = times[first[index] - 1][1] if first[index] > 0 else 0.0
            starts.append(max(previous_end, begin - LEAD_S, 0.0))
        else:
            starts.append(starts[-1] if starts else 0.0)
    end_of_speech = max(duration_s, times[-1][1]) if times else duration_s
    ends = [*starts[1:], end_of_speech]
    return tuple((round(a, 3), round(max(a, b), 3), text) for a, b, text in zip(starts, ends, sentences))
