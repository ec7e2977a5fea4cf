"""The offline provider: extractive summary + Piper voice in a process pool sized to the cores.

Synthesis is CPU-bound, so it runs in worker processes and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pipeline.engine import narrate, speech
from pipeline.errors import DocumentError, TransientError
from pipeline.models import Document, RunSettings, SpokenSummary

LOCAL_MODEL = "textrank-extractive"


def threads_per_worker(workers: int) -> int:
    """Share the cores: two workers on two cores get one intra-op thread each (oversubscription costs ~25%)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class LocalProvider:
    name = "local"

    def __init__(self, settings: RunSettings) -> None:
        workers = max(1, settings.local_workers)
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=speech.init_worker,
            initargs=(threads_per_worker(workers),),
        )

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._pool, narrate.narrate, document.text, settings.words, document.title, "local")
        except BrokenProcessPool as exc:
            raise TransientError(f"local speech worker died: {exc}") from None
        if not result.transcript:
            raise DocumentError("document has no sentences that can be spoken")
        return SpokenSummary(
            wav=result.audio.wav,
            transcript=result.transcript,
            sample_rate=result.audio.sample_rate,
            duration_s=result.audio.duration_s,
            provider=self.name,
            model=LOCAL_MODEL,
            voice=document.voice or settings.voice,
            engine=speech.ENGINE_VOICE,
        )

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
