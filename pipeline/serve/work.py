"""The CPU work behind one `audiosum serve` answer (summarising, speaking, hearing), and the process pool it runs in,
so the event loop only ever moves bytes.

Worker functions are picklable and know nothing of HTTP or asyncio; the pool knows nothing of what they compute.
The engine is imported inside the functions: the server process itself never loads numpy, scipy or the voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from pipeline.engine import narrate, speech
    from pipeline.serve.encode import SpeechFormat

Engine = Literal["local", "tone"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """Everything the server does differently for one engine, declared once (the work, the pool and the app read
    it; nothing else compares engine names)."""

    neural_voice: bool     # speaks with the neural voice when audio is asked for (else tone, always)
    jobs_per_worker: int   # jobs admitted (queued or running) per worker
    warm_at_start: bool    # every worker started before the port is bound


# The local engine's jobs take seconds of speech synthesis each, so a short queue, and its voices load on first use.
# The tone engine's take milliseconds, and as the load-test peer it must take a client's ordinary concurrency (up to
# 64) without 503s the real service would not give, from the first request. What a queued job holds is bounded
# anyway by the body bytes the guard lets in flight.
ENGINES: dict[str, EngineProfile] = {
    "local": EngineProfile(neural_voice=True, jobs_per_worker=2, warm_at_start=False),
    "tone": EngineProfile(neural_voice=False, jobs_per_worker=64, warm_at_start=True),
}


class WorkersLost(Exception):
    """A worker process died mid-job (killed, out of memory); the pool has been replaced for the next request."""


class PoolFull(Exception):
    """As many jobs as the pool admits are already queued or running; the request is refused, not queued."""


# -- the work (runs in a worker process) ------------------------------------------------------------------------

def _mode(engine: Engine, with_voice: bool) -> str:
    """narrate's engine: the tone engine always makes tone; the local one speaks only when audio is asked for."""
    if not ENGINES[engine].neural_voice:
        return "tone"
    return "local" if with_voice else "text"


def _sound(spoken: list[str], engine: Engine, with_voice: bool) -> speech.SpeechAudio:
    """Sentences as audio, as narrate would make them for this engine."""
    from pipeline.engine import speech, tone

    return speech.speak(spoken) if _mode(engine, with_voice) == "local" else tone.tone(spoken)


def compose(text: str, words: int, title: str | None, engine: Engine, with_voice: bool) -> narrate.Narration:
    """A summary of `text`, spoken (or toned) unless only its transcript is wanted."""
    from pipeline.engine import narrate

    return narrate.narrate(text, words, title, _mode(engine, with_voice))


def answer(question: str, context: str, words: int, engine: Engine, with_voice: bool) -> narrate.Narration:
    """A follow-up question answered from the document and what was said about it since, in a sentence or two."""
    from pipeline.engine import narrate

    return narrate.answer(question, context, min(words, narrate.ANSWER_WORDS), _mode(engine, with_voice))


def hear(parts: list[tuple[bytes, str]], words: int, title: str | None, engine: Engine,
         with_voice: bool) -> narrate.Narration:
    """Recordings → what was heard, summarised and spoken; InvalidAudio if one does not decode."""
    from pipeline.engine import narrate
    from pipeline.engine.listen import transcribe

    heard: list[str] = []
    seconds = 0.0
    for data, audio_format in parts:
        result = transcribe(data, suffix=f".{audio_format}")
        heard.append(result.text)
        seconds += result.duration_s
    text = " ".join(h for h in heard if h)
    if text:
        # What was heard is summarised properly (TextRank) even by the tone engine when no audio is asked for.
        return narrate.narrate(text, words, title, _mode(engine, with_voice) if with_voice else "text")
    spoken = [f"No speech was recognised in the {seconds:.1f} second recording."]
    return narrate.Narration(spoken[0], _sound(spoken, engine, with_voice), tuple(spoken))


def speak_text(text: str, engine: Engine, response_format: SpeechFormat, speed: float) -> bytes:
    """`text` spoken verbatim (the neural voice, or tone for the tone engine), encoded as `response_format`."""
    from pipeline.serve.encode import encode_speech

    wav = _sound([text], engine, with_voice=True).wav
    return encode_speech(wav, response_format, speed)


def encode_answer(wav: bytes, audio_format: SpeechFormat) -> bytes:
    """A chat answer's audio in the audio.format asked for (mp3, opus, flac, aac), as the speech endpoint encodes."""
    from pipeline.serve.encode import encode_speech

    return encode_speech(wav, audio_format)


def _ready() -> None:
    """A job that does nothing: submitting it starts a worker."""


def _init_tone_worker() -> None:
    # As speech.init_worker: the server decides when its workers stop; a Ctrl-C to the process group must not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the pool (used from the event loop) ------------------------------------------------------------------------

class WorkerPool:
    """`workers` spawned processes (the local engine's each load the voice once); a pool broken by a dead worker is
    replaced, and the request that was running gets WorkersLost instead of every later one failing.

    At most `capacity` jobs are admitted (waiting or running); one more is PoolFull at once. Jobs wait here, not in
    the executor, which is given one job per worker: a waiting job whose caller stops waiting (its client left) is
    dropped, while a running one is abandoned but keeps its worker and its place until it ends, so abandoned work
    cannot pile up behind the bound. Used from one event loop."""

    def __init__(self, engine: Engine, workers: int, capacity: int | None = None) -> None:
        self.engine = engine
        self.profile = ENGINES[engine]
        self.workers = max(1, workers)
        self.capacity = max(self.workers, capacity or self.workers * self.profile.jobs_per_worker)
        self.admitted = 0          # waiting or running
        self.dropped = 0           # cancelled while waiting, never run
        self._free = asyncio.Semaphore(self.workers)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        if self.profile.neural_voice:
            from pipeline.engine import speech

            # Spawned: no inherited sockets, locks or onnxruntime threads; each loads the voice once.
            return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=speech.init_worker,
                                       initargs=(speech.threads_per_worker(self.workers),))
        # The tone engine answers load tests in milliseconds, so its workers must not each import the engine on
        # their first request: they fork from a fork server that imported it once (and holds no sockets).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pipeline.serve.work", "pipeline.engine.narrate", "pipeline.engine.listen",
                                        "pipeline.serve.encode"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_tone_worker)

    async def warm(self) -> None:
        """Start every worker now, if the engine wants its workers ready before the first request."""
        if self.profile.warm_at_start:
            await asyncio.gather(*(self.run(_ready) for _ in range(self.workers)))

    def _ended(self) -> None:
        self.admitted -= 1
        self._free.release()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """The job's result; PoolFull at once when the pool is full."""
        if self.admitted >= self.capacity:
            raise PoolFull(f"{self.admitted} jobs are waiting or running (at most {self.capacity})")
        self.admitted += 1
        try:
            await self._free.acquire()
        except BaseException:
            self.admitted -= 1
            self.dropped += 1
            raise
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            try:
                future = executor.submit(function, *args)
            except BaseException:
                self._ended()
                raise
            # The job's place is given back when it ends, however its caller fares (called from the executor's
            # thread, hence through the loop).
            future.add_done_callback(lambda _: _call_soon(loop, self._ended))
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            if self._executor is executor:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            raise WorkersLost("a worker process stopped while answering") from exc

    def shutdown(self) -> None:
        self._executor.shutdown(cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
        loop.call_soon_threadsafe(callback)
