"""The offline provider: extractive summary + Piper voice in a process pool sized to the cores.

Synthesis is CPU-bound, so it runs in worker processes and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pipeline.audio.stitch import stitch_audio
from pipeline.engine import listen, narrate, speech
from pipeline.errors import DocumentError, TransientError
from pipeline.models import (
    DEFAULT_VOICE,
    Document,
    EventListener,
    FollowUpAnswer,
    RunSettings,
    SpokenSummary,
    questions_for,
)
from pipeline.plan.split import chapter_label, narration_parts
from pipeline.providers.base import Provider

LOCAL_MODEL = "textrank-extractive"


class LocalProvider(Provider):
    name = "local"

    def __init__(self, settings: RunSettings, on_event: EventListener | None = None) -> None:
        self._workers = max(1, settings.local_workers)
        self._on_event = on_event
        self._warned: set[str] = set()  # each ignored option is warned about once per run (one provider a run)
        self._start_workers(settings)

    def _start_workers(self, settings: RunSettings) -> None:
        """Where the engine's calls run. The executor seam: another executor (providers.ray_engine) overrides this,
        `_in_pool` and `aclose`, and keeps everything else."""
        self._pool = self._new_pool()

    def _ignored(self, document: Document, settings: RunSettings) -> str:
        """The voice asked for; warns (once a run each) that the offline engine speaks in its own voice and does
        not follow instructions. The API's default voice counts as not asked for."""
        requested = document.voice or settings.voice
        if settings.output != "text" and requested != DEFAULT_VOICE:
            self._warn("voice", requested, f"the offline engine has one voice ({speech.ENGINE_VOICE}); the voice "
                       f"{requested!r} is ignored (sidecars record it as voice_requested, and voice_used)")
        instructions = document.instructions or settings.instructions
        if instructions:
            self._warn("instructions", instructions, "the offline engine chooses sentences of the document "
                       "(extractive); --instructions (and a manifest item's instructions) are ignored")
        return requested

    def _warn(self, option: str, requested: str, message: str) -> None:
        if option in self._warned or self._on_event is None:
            return
        self._warned.add(option)
        self._on_event("warning", {"kind": f"offline_ignores_{option}", "option": option,
                                   "requested": requested[:200], "message": message})

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=speech.init_worker,
            initargs=(speech.threads_per_worker(self._workers),),
        )

    async def _read_aloud(self, document: Document, settings: RunSettings) -> SpokenSummary:
        """--mode narrate: every sentence, part by part in the pool, stitched with chapter marks."""
        parts = narration_parts(document.text)
        narrations = await asyncio.gather(*(self._in_pool(narrate.read_aloud, part) for part in parts))
        joined = stitch_audio([n.audio.wav for n in narrations])
        cues = tuple((round(start + a, 3), round(start + b, 3), text)
                     for start, n in zip(joined.starts, narrations) for a, b, text in n.cues())
        return SpokenSummary(
            wav=joined.wav, transcript=" ".join(n.transcript for n in narrations), sample_rate=joined.sample_rate,
            duration_s=joined.duration_s, provider=self.name, model=LOCAL_MODEL, voice=speech.ENGINE_VOICE,
            voice_requested=self._ignored(document, settings), engine=speech.ENGINE_VOICE, cues=cues, parts=len(parts),
            chapters=tuple((start, chapter_label(part)) for start, part in zip(joined.starts, parts)))

    async def _narrate(self, document: Document, settings: RunSettings) -> narrate.Narration:
        return await self._in_pool(narrate.narrate, document.text, settings.words, document.title, "local")

    async def _in_pool(self, function: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, function, *args)
            except BrokenProcessPool as exc:
                # A worker died (e.g. the OOM killer): start a fresh pool once rather than fail every document.
                if attempt == 2:
                    raise TransientError("the offline speech worker died twice on this document") from exc
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
            except DocumentError:  # InvalidAudio, AudioToolFailed: already what the runner records
                raise
            except Exception as exc:  # the engine is this provider's boundary: classify what it raises
                raise DocumentError(f"offline engine failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        requested = self._ignored(document, settings)
        if document.audio is not None:
            summary = await self._hear(document, settings)
        elif settings.mode == "narrate":
            return await self._read_aloud(document, settings)
        else:
            summary = await self._summarise_text(document, settings)
        summary = dataclasses.replace(summary, voice_requested=requested)
        questions = questions_for(document, settings)
        if not questions:
            return summary
        # The offline engine answers from what it read (or heard); the conversation so far (the earlier questions
        # and answers) steers which of the matching sentences come first.
        context = summary.heard or document.text
        engine = "text" if settings.output == "text" else "local"
        answers: list[FollowUpAnswer] = []
        for question in questions:
            conversation = " ".join(part for a in answers for part in (a.question, a.transcript))
            result = await self._in_pool(narrate.answer, question, context,
                                         min(settings.words, narrate.ANSWER_WORDS), engine, conversation)
            spoken = engine == "local"
            answers.append(FollowUpAnswer(question=question, transcript=result.transcript,
                                          wav=result.audio.wav if spoken else b"",
                                          duration_s=result.audio.duration_s if spoken else 0.0,
                                          basis=result.basis))
        return dataclasses.replace(summary, followups=tuple(answers))

    async def _hear(self, document: Document, settings: RunSettings) -> SpokenSummary:
        """A recording: recognised offline (Whisper tiny.en), summarised (TextRank), spoken unless --output text."""
        assert document.audio is not None
        spoken = settings.output != "text"
        heard, seconds, result = await self._in_pool(narrate.hear, document.audio.path, document.audio.suffix,
                                                     settings.words, document.title, "local" if spoken else "text",
                                                     settings.language)
        if result is None or not result.transcript:
            raise DocumentError(f"no speech was recognised in the {seconds:.1f} s recording")
        return SpokenSummary(
            wav=result.audio.wav if spoken else b"", transcript=result.transcript,
            sample_rate=result.audio.sample_rate if spoken else 0,
            duration_s=result.audio.duration_s if spoken else 0.0, provider=self.name, model=LOCAL_MODEL,
            voice=speech.ENGINE_VOICE if spoken else "",
            engine=f"{listen.ENGINE} + {speech.ENGINE_VOICE}" if spoken else listen.ENGINE,
            cues=result.cues() if spoken else (), heard=heard, input_seconds=round(seconds, 3))

    async def _summarise_text(self, document: Document, settings: RunSettings) -> SpokenSummary:
        result = await self._narrate(document, settings)
        if not result.transcript:
            raise DocumentError("document has no sentences that can be spoken")
        return SpokenSummary(
            wav=result.audio.wav,
            transcript=result.transcript,
            sample_rate=result.audio.sample_rate,
            duration_s=result.audio.duration_s,
            provider=self.name,
            model=LOCAL_MODEL,
            voice=speech.ENGINE_VOICE,
            engine=speech.ENGINE_VOICE,
            cues=result.cues(),
        )

    async def aclose(self) -> None:
        pool = self._pool
        await asyncio.get_running_loop().run_in_executor(None, lambda: pool.shutdown(wait=True, cancel_futures=True))
