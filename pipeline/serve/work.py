"""The CPU work behind one `audiosum serve` answer (summarising, speaking, hearing), and the process pool it runs in,
so the event loop only ever moves bytes.

Worker functions are picklable and know nothing of HTTP or asyncio; the pool knows nothing of what they compute.
The engine is imported inside the functions: the server process itself never loads numpy, scipy or the voice.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from pipeline.engine import narrate

Engine = Literal["local", "tone"]
T = TypeVar("T")


class WorkersLost(Exception):
    """A worker process died mid-job (killed, out of memory); the pool has been replaced for the next request."""


# -- the work (runs in a worker process) ------------------------------------------------------------------------

def _mode(engine: Engine, with_voice: bool) -> str:
    """narrate's engine: the tone engine always makes tone; the local one speaks only when audio is asked for."""
    if engine == "tone":
        return "tone"
    return "local" if with_voice else "text"


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
    from pipeline.engine import narrate, speech, tone
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
    audio = speech.speak(spoken) if _mode(engine, with_voice) == "local" else tone.tone(spoken)
    return narrate.Narration(spoken[0], audio, tuple(spoken))


def _ready() -> None:
    """A job that does nothing: submitting it starts a worker."""


def _init_tone_worker() -> None:
    # As speech.init_worker: the server decides when its workers stop; a Ctrl-C to the process group must not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the pool (used from the event loop) ------------------------------------------------------------------------

class WorkerPool:
    """`workers` spawned processes (the local engine's each load the voice once); a pool broken by a dead worker is
    replaced, and the request that was running gets WorkersLost instead of every later one failing."""

    def __init__(self, engine: Engine, workers: int) -> None:
        self.engine = engine
        self.workers = max(1, workers)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        if self.engine == "local":
            from pipeline.engine import speech

            # Spawned: no inherited sockets, locks or onnxruntime threads; each loads the voice once.
            return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=speech.init_worker,
                                       initargs=(speech.threads_per_worker(self.workers),))
        # The tone engine answers load tests in milliseconds, so its workers must not each import the engine on
        # their first request: they fork from a fork server that imported it once (and holds no sockets).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pipeline.serve.work", "pipeline.engine.narrate", "pipeline.engine.listen"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_tone_worker)

    async def warm(self) -> None:
        """Start every worker now, so that the first requests do not wait for processes to start."""
        await asyncio.gather(*(self.run(_ready) for _ in range(self.workers)))

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except BrokenProcessPool:
            if self._executor is executor:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            raise WorkersLost("a worker process stopped while answering") from None

    def shutdown(self) -> None:
        self._executor.shutdown(cancel_futures=True)
