"""A stand-in voice for load tests: a quiet tone whose length follows the words, made instantly.

Not speech and never presented as speech; `audiosum serve --engine tone` labels its answers so.
"""

from __future__ import annotations

import numpy as np

from pipeline.audio import pcm16_to_wav
from pipeline.engine.speech import SpeechAudio

SAMPLE_RATE = 8000
SECONDS_PER_WORD = 0.4

_ONE_SECOND = (np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE) * 3000).astype("<i2").tobytes()


def tone(sentences: list[str]) -> SpeechAudio:
    starts: list[float] = []
    seconds = 0.0
    for sentence in sentences:
        starts.append(seconds)
        seconds += max(1, len(sentence.split())) * SECONDS_PER_WORD
    seconds = max(seconds, 0.5)
    frames = int(seconds * SAMPLE_RATE)
    repeats = frames // SAMPLE_RATE + 1
    pcm = (_ONE_SECOND * repeats)[: frames * 2]
    return SpeechAudio(wav=pcm16_to_wav(pcm, SAMPLE_RATE), sample_rate=SAMPLE_RATE, duration_s=frames / SAMPLE_RATE,
                       sentence_starts_s=tuple(starts))
