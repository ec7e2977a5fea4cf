"""OpenAIProvider: which requests a document takes through the API — a summary in one request or map→reduce, a
recording heard in parts, narration, two-step (text, then the speech endpoint), follow-up turns — each paced by a
RateLimiter and retried by a RetryPolicy.

Knows strategies, not bytes (wire.py, speech.py) or sockets (transport.py); every failure is a pipeline.errors class.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from pipeline.audio import plausible, recordings, wav_info
from pipeline.audio.stitch import join_answers, stitch_audio
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.errors import (
    ApiError,
    DocumentError,
    TransientError,
    UsageError,
    keeping_attempts,
)
from pipeline.models import (
    Attempt,
    Document,
    EventListener,
    RequestStep,
    RunSettings,
    SpokenSummary,
    Usage,
    merged_steps,
    questions_for,
    total_usage,
)
from pipeline.plan.costs import speech_usage
from pipeline.plan.split import chapter_label, narration_parts, split_for_budget
from pipeline.providers.base import Provider
from pipeline.providers.openai import preflight
from pipeline.providers.openai.conversation import Conversation
from pipeline.providers.openai.preflight import Preflight
from pipeline.providers.openai.prompts import (
    combined_parts,
    narrate_messages,
    part_messages,
    recording_in_parts,
    recording_system_prompt,
    recording_user_content,
)
from pipeline.providers.openai.ratelimit import SPOKEN_WORDS_PER_SECOND, RateLimiter, TokenEstimator
from pipeline.providers.openai.retry import RetryPolicy
from pipeline.providers.openai.speech import (
    SPEECH_PATH,
    parse_encoded_speech,
    parse_speech,
    speech_body,
    speech_parts,
)
from pipeline.providers.openai.transport import ApiTransport, Sink
from pipeline.providers.openai.wire import (
    CHAT_PATH,
    Answer,
    build_request_body,
    carries_audio,
    classify_error_response,
    direct_format,
    output_options,
    parse_answer,
    parse_text_answer,
    voice_name,
)

if TYPE_CHECKING:
    from pipeline.providers.openai.batch import BatchApi

T = TypeVar("T")
MAX_REDUCE_ROUNDS = 4  # rounds of summarising part summaries: 4 rounds take a 20 MB text down to one request
PREPARING_AT_ONCE = 2  # recordings converted or scanned for pauses at once (each holds up to ~60 MB per hour)


class OpenAIProvider(Provider):
    """Chat Completions audio over one pooled httpx client, paced by a RateLimiter, retried by a RetryPolicy."""

    name = "openai"

    def __init__(self, settings: RunSettings, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock = SYSTEM_CLOCK, on_event: EventListener | None = None, check_model: bool = False) -> None:
        """check_model: GET models/{model} once before the first request (a run's provider does; see preflight)."""
        self._on_event = on_event
        self._transport = ApiTransport(settings, transport, clock)
        self._secret = settings.api_key
        self.clock = clock
        self._preparing = asyncio.Semaphore(PREPARING_AT_ONCE)
        self.limiter = RateLimiter(settings.rpm, settings.tpm, clock=clock)
        self._settings = settings
        # Two-step talks to two models, each with its own rate limits (learned from its own x-ratelimit-* answers;
        # --rpm/--tpm bound each); chat-audio's requests (the map step's text model too) share one limiter.
        self._paced: dict[str, tuple[RateLimiter, RetryPolicy]] = {}
        self._model = settings.model
        self._preflight_lock = asyncio.Lock()
        self._preflight_done = not check_model
        self._preflight_error: BaseException | None = None
        self.estimator = TokenEstimator()
        self.retry = self._retry_policy(self.limiter)

    def _retry_policy(self, limiter: RateLimiter) -> RetryPolicy:
        def on_retry(error: ApiError, wait_s: float, attempt: int, doc_id: str) -> None:
            self._on_retry(limiter, error, wait_s, attempt, doc_id)

        return RetryPolicy(max_attempts=self._settings.max_attempts, initial_wait_s=self._settings.retry_backoff_s,
                           clock=self.clock, on_retry=on_retry)

    def paced(self, model: str) -> tuple[RateLimiter, RetryPolicy]:
        """The limiter and retry policy a request to `model` goes through."""
        if self._settings.strategy != "two-step" or model == self._model:
            return self.limiter, self.retry
        if model not in self._paced:
            limiter = RateLimiter(self._settings.rpm, self._settings.tpm, clock=self.clock)
            self._paced[model] = (limiter, self._retry_policy(limiter))
        return self._paced[model]

    def _on_retry(self, limiter: RateLimiter, error: ApiError, wait_s: float, attempt: int, doc_id: str) -> None:
        if error.status == 429:
            # A rate-limit answer is about the whole client (for this model), not this task: everyone waits.
            limiter.pause_for(wait_s)
        if self._on_event is not None:
            self._on_event("retry", {"doc_id": doc_id, "attempt": attempt, "cause": error.cause,
                                     "status": error.status, "wait_s": round(wait_s, 3)})
            if error.status == 429:
                self._on_event("rate_limit_pause", {"seconds": round(wait_s, 3), "doc_id": doc_id})

    async def preflight(self) -> None:
        """Once per provider, before its first request: GET models/{model} (no rate budget: not a chat request).
        Unknown model: UsageError; refused key: AuthenticationFailed; both raised again for every later caller."""
        async with self._preflight_lock:
            if not self._preflight_done:
                self._preflight_done = True
                try:
                    await self._check_model()
                except (UsageError, ApiError) as exc:
                    self._preflight_error = exc
        if self._preflight_error is not None:
            raise self._preflight_error

    async def _check_model(self) -> None:
        def refused(response: httpx.Response) -> None:
            raise classify_error_response(response, secret=self._secret)

        settings = self._settings
        # Two-step sends text to --text-model and speech to --tts-model (--model hears recordings, checked when used).
        roles = ((("text", settings.text_model), ("speech", settings.tts_model)) if settings.strategy == "two-step"
                 else (("chat-audio", self._model),))
        for role, model in roles:
            found = await preflight.check_model(self._transport.client, model, now_wall=self.clock.wall(), role=role,
                                                deadline_s=self._transport.deadline_s, secret=self._secret,
                                                refused=refused)
            self._announce(found)

    def _announce(self, found: Preflight) -> None:
        if self._on_event is None:
            return
        if found.shutdown_date is not None:
            self._on_event("warning", {"kind": "model_shutdown", "model": found.model,
                                       "shutdown_date": found.shutdown_date, "days_left": found.days_left,
                                       "message": preflight.shutdown_message(found)})
        elif found.note is not None:
            self._on_event("debug", {"kind": "model_not_checked", "model": found.model, "message": found.note})

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        await self.preflight()
        if settings.mode == "narrate" and document.audio is None:
            return await self._narrate(document, settings)
        if document.audio is not None:
            summary, opening = await self._summarise_recording(document, settings)
        else:
            summary, opening = await self._summarise_text(document, settings)
        return await self._with_followups(document, settings, summary, opening)

    async def speak_batch_answer(self, document: Document, settings: RunSettings, text: str, *, usage: Usage,
                                 request_id: str | None, batch_id: str | None) -> SpokenSummary:
        """--batch: the text step's answer came from a batch; speak it (and ask the follow-ups) like two-step."""
        await self.preflight()
        said = await self.speak_text(document, settings, text)
        text_step = RequestStep("text", f"/batches/{batch_id}", settings.text_model, (request_id,), usage)
        summary = dataclasses.replace(said, steps=(text_step, *said.steps), usage=total_usage([usage, said.usage]),
                                      model=settings.text_model)
        return await self._with_followups(document, settings, summary,
                                          build_request_body(document, settings)["messages"])

    def batches(self) -> OpenAIProvider:
        """--batch: this provider is its own Batch service (batch_api, clock, speak_batch_answer)."""
        return self

    def batch_api(self) -> BatchApi:
        """The Batch API over this provider's client, retried by its policy."""
        from pipeline.providers.openai.batch import BatchApi

        async def retried(attempt_once: Callable[[], Awaitable[T]], label: str) -> T:
            result, _ = await self.retry.call(attempt_once, label)
            return result

        return BatchApi(self.request, retried, self._secret)

    async def _with_followups(self, document: Document, settings: RunSettings, summary: SpokenSummary,
                              opening: list[dict[str, Any]]) -> SpokenSummary:
        questions = questions_for(document, settings)
        if not questions:
            return summary
        conversation = Conversation(self, document, settings, opening, summary)
        with keeping_attempts(lambda: summary.attempts):
            answers = [await conversation.ask(question) for question in questions]
        return dataclasses.replace(summary, followups=tuple(answers), attempts=summary.attempts + conversation.attempts,
                                   usage=total_usage([summary.usage, *conversation.usages]),
                                   steps=merged_steps([*summary.steps, *conversation.steps]))

    async def _summarise_text(self, document: Document,
                              settings: RunSettings) -> tuple[SpokenSummary, list[dict[str, Any]]]:
        """The summary, and the messages its answer replied to (the start of any follow-up conversation)."""
        parts = split_for_budget(document.text, settings.max_input_tokens)
        if len(parts) == 1:
            opening = build_request_body(document, settings)["messages"]
            return await self._summary_in_one_request(document, settings), opening
        # Map: each part to a text summary (a text model), then reduce: speak from the part summaries. When even
        # the summaries are over the budget (a book: hundreds of parts), they are summarised again, round by round.
        map_parts = len(parts)
        map_usages: list[Usage] = []
        map_steps: list[RequestStep] = []
        attempts: list[Attempt] = []
        reduced = document
        with keeping_attempts(lambda: attempts):
            for _ in range(MAX_REDUCE_ROUNDS):
                part_words = max(60, min(400, settings.max_input_tokens // (len(parts) * 2)))
                summaries: list[str] = []
                for index, part in enumerate(parts, start=1):
                    # A cap on the answer too (1.5 tokens a word asked for): all the summaries then fit in 3/4 of the
                    # budget, so a chatty model cannot keep the rounds from shrinking.
                    body = {"model": settings.map_model, "max_completion_tokens": part_words * 3 // 2,
                            "messages": part_messages(document, part, index, len(parts), part_words)}
                    answer, part_attempts = await self._call(body, document.id, part_words, parse_text_answer)
                    summaries.append(answer.text)
                    map_usages.append(answer.usage)
                    map_steps.append(RequestStep("text", "/" + CHAT_PATH, settings.map_model, (answer.request_id,),
                                                 answer.usage))
                    attempts.extend(part_attempts)
                reduced = dataclasses.replace(document, text=combined_parts(summaries))
                shorter = split_for_budget(reduced.text, settings.max_input_tokens)
                if len(shorter) == 1:
                    break
                if len(shorter) >= len(parts):
                    raise DocumentError(f"the part summaries ({len(shorter)} parts) are no shorter than the "
                                        f"{len(parts)} parts they summarise; raise --max-input-tokens")
                parts = shorter
            else:
                raise DocumentError(f"the part summaries still exceed --max-input-tokens after {MAX_REDUCE_ROUNDS} "
                                    "rounds; raise --max-input-tokens")
            summary = await self._summary_in_one_request(reduced, settings)
        steps = merged_steps([*map_steps, *summary.steps]) if summary.steps else ()
        return dataclasses.replace(summary, attempts=tuple(attempts) + summary.attempts, parts=map_parts,
                                   usage=total_usage([*map_usages, summary.usage]), steps=steps), \
            build_request_body(reduced, settings)["messages"]

    async def _summarise_recording(self, document: Document,
                    settings: RunSettings) -> tuple[SpokenSummary, list[dict[str, Any]]]:
        """A recording as input_audio, part by part when it is over the size limit; the parts' answers joined.

        The second value is the messages a follow-up conversation starts from: the request itself for one part;
        for several, a text turn naming the recording (the joined answer, which has no single audio id, follows).
        """
        assert document.audio is not None
        async with self._preparing:  # converting and scanning for pauses is CPU and memory: a few at a time
            recording = await asyncio.to_thread(recordings.plan, document.audio, settings.max_audio_bytes)
        system = {"role": "system", "content": recording_system_prompt(
            settings.words, document.instructions or settings.instructions, spoken=settings.output != "text")}
        count = len(recording.cuts)
        answers: list[SpokenSummary] = []
        messages: list[dict[str, Any]] = []
        with keeping_attempts(lambda: (a for answer in answers for a in answer.attempts)):
            for index in range(count):
                async with self._preparing:
                    part = await asyncio.to_thread(recording.part, index)
                content = recording_user_content(document.title, base64.b64encode(part.data).decode("ascii"),
                                                 part.format, index + 1, count)
                del part
                messages = [system, {"role": "user", "content": content}]
                answers.append(await self.answer_turn(document, settings, messages, recording.cuts[index][1]
                                              - recording.cuts[index][0], direct=count == 1))
        heard_s = round(recording.duration_s, 3)
        if count == 1:
            return dataclasses.replace(answers[0], input_seconds=heard_s), messages
        joined = dataclasses.replace(join_answers(answers, separator="\n\n", spoken=settings.output != "text"),
                                     input_seconds=heard_s, audio_id=None, audio_expires_at=None)
        return joined, [system, {"role": "user", "content": recording_in_parts(document.title, count)}]

    async def answer_turn(self, document: Document, settings: RunSettings, messages: list[dict[str, Any]],
                  audio_seconds: float = 0.0, *, direct: bool = True) -> SpokenSummary:
        """One request in --output's modalities; a text-only answer comes back as a summary with no audio.
        Two-step: the answer is written as text, then spoken by the speech endpoint. direct: the audio may come in
        --format itself (not for parts that are stitched)."""
        audio_format = direct_format(settings) if direct else "wav"
        if settings.strategy == "two-step" and settings.output != "text":
            return await self._two_step_turn(document, settings, messages, audio_seconds, audio_format)
        body = output_options(document, settings, audio_format) | {"messages": messages}
        if settings.output == "text":
            if not carries_audio(messages):
                # Text in, text out (follow-ups about a recording summarised in parts): the audio models refuse
                # that combination, so a text model answers.
                body["model"] = settings.map_model
            answer, attempts = await self._call(body, document.id, settings.words, parse_text_answer, audio_seconds)
            return SpokenSummary(wav=b"", transcript=answer.text, sample_rate=0, duration_s=0.0, provider=self.name,
                                 model=str(body["model"]), voice="", request_id=answer.request_id,
                                 usage=answer.usage, attempts=attempts)
        voice = voice_name(body["audio"]["voice"])
        spoken, attempts = await self._call(body, document.id, settings.words, self._parse_spoken(voice, audio_format),
                                            audio_seconds, title=document.title)
        return dataclasses.replace(spoken, attempts=attempts)

    async def _two_step_turn(self, document: Document, settings: RunSettings, messages: list[dict[str, Any]],
                              audio_seconds: float, audio_format: str = "wav") -> SpokenSummary:
        """Two-step: a text model writes the answer (a recording is heard by the audio model, answering in text),
        then the speech endpoint speaks exactly that text."""
        hears = carries_audio(messages)
        body: dict[str, Any] = {"model": settings.model if hears else settings.text_model, "messages": messages}
        if hears:
            body["modalities"] = ["text"]
        written, attempts = await self._call(body, document.id, settings.words, parse_text_answer, audio_seconds)
        text_step = RequestStep("text", "/" + CHAT_PATH, str(body["model"]), (written.request_id,), written.usage)
        with keeping_attempts(lambda: attempts):
            said = await self.speak_text(document, settings, written.text, audio_format)
        return dataclasses.replace(said, attempts=attempts + said.attempts, steps=(text_step, *said.steps),
                                   usage=total_usage([written.usage, said.usage]), model=text_step.model)

    async def speak_text(self, document: Document, settings: RunSettings, text: str,
                  audio_format: str = "wav") -> SpokenSummary:
        """The speech endpoint speaks `text` verbatim, in parts of at most 4,096 characters, stitched into one WAV
        (one part may come in a direct `audio_format`, saved as it comes)."""
        voice = document.voice or settings.voice
        limiter, retry = self.paced(settings.tts_model)
        parts = speech_parts(text)
        direct = audio_format if len(parts) == 1 else "wav"
        if direct != "wav":
            return await self._speak_text_direct(document, settings, text, voice, direct)
        wavs: list[bytes] = []
        ids: list[str | None] = []
        attempts: list[Attempt] = []
        with keeping_attempts(lambda: attempts):
            for part in parts:
                payload = json.dumps(speech_body(part, voice, settings)).encode("utf-8")
                cost = len(part) // 4 + 1

                async def attempt_once(payload: bytes = payload, cost: int = cost,
                                       part: str = part) -> tuple[bytes, str | None]:
                    answer = await self._paced_post(limiter, cost, SPEECH_PATH, payload,
                                                    plausible.answer_bytes(plausible.spoken_units(part), base64=False))
                    return parse_speech(answer, part, secret=self._secret)

                (wav, request_id), part_attempts = await retry.call(attempt_once, document.id)
                wavs.append(wav)
                ids.append(request_id)
                attempts.extend(part_attempts)
        # Joining and measuring the parts is CPU work: off the event loop.
        joined = await asyncio.to_thread(stitch_audio, wavs, 250) if len(wavs) > 1 else None
        wav = joined.wav if joined else wavs[0]
        info = await asyncio.to_thread(wav_info, wav) if joined is None else joined
        usage = speech_usage(settings.tts_model, len(text), info.duration_s)
        return SpokenSummary(
            wav=wav, transcript=text, sample_rate=info.sample_rate, duration_s=info.duration_s, provider=self.name,
            model=settings.tts_model, voice=voice_name(voice), request_id=ids[-1], usage=usage,
            attempts=tuple(attempts), steps=(RequestStep("speech", "/" + SPEECH_PATH, settings.tts_model, tuple(ids),
                                                         usage, usage_estimated=True, characters=len(text)),))

    async def _speak_text_direct(self, document: Document, settings: RunSettings, text: str, voice: str,
                          audio_format: str) -> SpokenSummary:
        """One speech request answered in --format itself; its length is measured when the runner tags it."""
        limiter, retry = self.paced(settings.tts_model)
        payload = json.dumps(speech_body(text, voice, settings, audio_format)).encode("utf-8")

        async def attempt_once() -> tuple[bytes, str | None]:
            answer = await self._paced_post(limiter, len(text) // 4 + 1, SPEECH_PATH, payload,
                                            plausible.answer_bytes(plausible.spoken_units(text), base64=False))
            return parse_encoded_speech(answer, audio_format, text, secret=self._secret)

        (data, request_id), attempts = await retry.call(attempt_once, document.id)
        # Usage is estimated from the audio's length, known once measured: the words at 2.5 a second until then.
        usage = speech_usage(settings.tts_model, len(text), len(text.split()) / SPOKEN_WORDS_PER_SECOND)
        return SpokenSummary(
            wav=data, transcript=text, sample_rate=0, duration_s=0.0, provider=self.name, model=settings.tts_model,
            voice=voice_name(voice), request_id=request_id, usage=usage, attempts=attempts, audio_format=audio_format,
            steps=(RequestStep("speech", "/" + SPEECH_PATH, settings.tts_model, (request_id,), usage,
                               usage_estimated=True, characters=len(text)),))

    async def _narrate(self, document: Document, settings: RunSettings) -> SpokenSummary:
        """--mode narrate: the whole text, part by part, stitched into one WAV with chapter marks. Two-step needs no
        text model: the speech endpoint reads each part."""
        parts = narration_parts(document.text)
        if settings.strategy == "two-step":
            said = [await self.speak_text(document, settings, part) for part in parts]
            joined = await asyncio.to_thread(functools.partial(
                join_answers, said, separator=" ", chapter_labels=[chapter_label(part) for part in parts]))
            return dataclasses.replace(joined, steps=merged_steps(s for answer in said for s in answer.steps))
        spoken: list[SpokenSummary] = []
        for part in parts:
            body = {**build_request_body(document, settings), "messages": narrate_messages(part)}
            voice = voice_name(body["audio"]["voice"])
            # Words as spoken: a script without spaces counts by characters (plausible.spoken_units), so its
            # answer's size cap and audio bound fit a Chinese or Japanese part too.
            words = round(plausible.spoken_units(part))
            answer, attempts = await self._call(body, document.id, words, self._parse_spoken(voice),
                                                title=document.title)
            spoken.append(dataclasses.replace(answer, attempts=attempts))
        return join_answers(spoken, separator=" ", chapter_labels=[chapter_label(part) for part in parts])

    async def _summary_in_one_request(self, document: Document, settings: RunSettings) -> SpokenSummary:
        if settings.strategy == "two-step":
            return await self.answer_turn(document, settings, build_request_body(document, settings)["messages"])
        audio_format = direct_format(settings)
        body = build_request_body(document, settings) | output_options(document, settings, audio_format)
        voice = voice_name(body["audio"]["voice"])
        summary, attempts = await self._call(body, document.id, settings.words, self._parse_spoken(voice, audio_format),
                                              title=document.title)
        return dataclasses.replace(summary, attempts=attempts)

    def _parse_spoken(self, voice: str,
                      audio_format: str = "wav") -> Callable[[httpx.Response, str | None], SpokenSummary]:
        return lambda response, secret: parse_answer(response, provider=self.name, voice=voice, secret=secret,
                                                     audio_format=audio_format)

    async def _call(self, body: dict[str, Any], doc_id: str, words: int,
                    parse: Callable[[httpx.Response, str | None], Answer],
                    audio_seconds: float = 0.0, title: str | None = None) -> tuple[Answer, tuple[Attempt, ...]]:
        """One logical request: paced, retried, its usage fed back into the limiter and the estimate. title: the
        document's, which a spoken answer may say on top of the words asked."""
        cost, raw_cost = self.estimator.estimate(body["messages"], words, audio_seconds)
        limiter, retry = self.paced(str(body["model"]))
        limiter.check_fits(cost)
        payload = json.dumps(body).encode("utf-8")

        # The answer is read with a cap from what was asked: a spoken answer of `words` at the slowest plausible
        # pace, or a text answer of any sane length; a server cannot make the client hold more.
        cap = (plausible.answer_bytes(words, base64=True) if "audio" in body else plausible.MAX_TEXT_ANSWER_BYTES)

        async def attempt_once() -> Answer:
            answer = parse(await self._paced_post(limiter, cost, CHAT_PATH, payload, cap), self._secret)
            if isinstance(answer, SpokenSummary) and (spoken := plausible.spoken_units(
                    answer.transcript)) > plausible.longest_answer_units(words) + plausible.spoken_units(title or ""):
                # The server's own transcript is what its audio is judged by: one far longer than asked would make
                # hours of audio (and of hearing) look plausible. (A text answer's length is bounded by the map
                # step's token cap, and a chatty one by the reduce rounds' own check.)
                raise TransientError(f"broken answer: {spoken:.0f} words where about {words} were asked",
                                     cause="broken_answer")
            return answer

        result, attempts = await retry.call(attempt_once, doc_id)
        limiter.reconcile(cost, result.usage.total_tokens)
        self.estimator.observe(raw_cost, result.usage.total_tokens)
        return result, attempts

    async def _paced_post(self, limiter: RateLimiter, cost: int, path: str, payload: bytes,
                          max_bytes: int) -> httpx.Response:
        """One attempt: wait for the budget, send (the answer read up to max_bytes); a 4xx gives its tokens back
        (refused before any work)."""
        reservation = await limiter.acquire(cost)
        try:
            return await self.send(payload, path, limiter, max_bytes)
        except ApiError as error:
            if error.status is not None and 400 <= error.status < 500:
                limiter.refund(reservation)
            raise

    async def send(self, payload: bytes, path: str = CHAT_PATH, limiter: RateLimiter | None = None,
                   max_bytes: int | None = None) -> httpx.Response:
        """One POST through the transport, its answer's x-ratelimit-* headers fed to `limiter` (the run's)."""
        return await self._transport.send(payload, path, limiter or self.limiter, max_bytes)

    async def request(self, method: str, path: str, *, limiter: RateLimiter | None = None,
                      max_bytes: int | None = None, sink: Sink | None = None, **options: Any) -> httpx.Response:
        """One request through the transport (see ApiTransport.request)."""
        return await self._transport.request(method, path, limiter=limiter, max_bytes=max_bytes, sink=sink,
                                             **options)

    async def aclose(self) -> None:
        await self._transport.aclose()
