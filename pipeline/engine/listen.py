"""Offline speech recognition: a recording in, the words PocketSphinx heard out, one utterance per speech segment.

Uses the en-us model shipped inside the `pocketsphinx` wheel (nothing is downloaded); CPU-bound, so callers run
it in a worker process or a thread. It recognises English speech only, without punctuation or capitals.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.audio import pcm_stream

ENGINE = "pocketsphinx en-us (offline)"
SAMPLE_RATE = 16_000
MAX_SECONDS = 4 * 3600.0  # the longest recording recognised (about 20 minutes of work at 14x real time)

_PRONOUN_I = re.compile(r"\bi\b(?=$|\s|')")  # the model writes "i" and "i'm" in lower case
_local = threading.local()  # one decoder per thread: a Decoder is not safe to share


@dataclass(frozen=True, slots=True)
class Heard:
    """What was recognised: (start, end, words) per speech segment, and the recording's length."""

    utterances: tuple[tuple[float, float, str], ...]
    duration_s: float

    @property
    def sentences(self) -> list[str]:
        """Each utterance as a sentence (capital first letter, a full stop), so summarisers can split them."""
        return [_PRONOUN_I.sub("I", words[0].upper() + words[1:]) + "." for _, _, words in self.utterances]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def _decoder():  # -> pocketsphinx.Decoder (imported lazily: only audio documents need it)
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        from pocketsphinx import Decoder

        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        _local.decoder = decoder
    return decoder


def transcribe(data: bytes | Path, *, suffix: str | None = None) -> Heard:
    """Recognise the speech in a recording (any format pipeline.audio decodes); InvalidAudio if it does not decode.

    The decode is streamed: memory stays at one speech segment however long the recording is.
    """
    from pocketsphinx import Segmenter

    decoder = _decoder()
    utterances: list[tuple[float, float, str]] = []
    with pcm_stream(data, suffix=suffix, sample_rate=SAMPLE_RATE, channels=1, max_seconds=MAX_SECONDS) as raw:
        stream = _CountingReader(raw)
        # Voice activity detection cuts the recording at pauses; each speech segment is decoded as one utterance,
        # which keeps the search small and gives the summariser sentence-like units.
        for segment in Segmenter(sample_rate=SAMPLE_RATE).segment(stream):
            decoder.start_utt()
            decoder.process_raw(segment.pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            words = " ".join(hypothesis.hypstr.split()) if hypothesis is not None else ""
            if words:
                utterances.append((round(segment.start_time, 2), round(segment.end_time, 2), words))
    return Heard(tuple(utterances), duration_s=stream.count / (2 * SAMPLE_RATE))


class _CountingReader:
    """A binary stream that counts what was read from it (the recording's length, without keeping it)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data
