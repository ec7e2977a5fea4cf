"""`POST /v1/chat/completions` for `audiosum serve`: ChatServer, the one server object the routes hang off, answers
chat completions with the narration the worker pool makes, within the rate limits and the fault plan.

Answers chat requests and holds what every endpoint shares (serve.core.ServerCore); it checks no request's shape
(chat_request.py), words no fault or 429 (fault_answers.py), builds no route (app.py) and serves no admin or models
route (admin.py, models.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import secrets
import sys
import time
import traceback
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from pipeline.errors import InvalidAudio
from pipeline.serve import fault_answers
from pipeline.serve import work as server_work
from pipeline.serve.batches import BatchesEndpoint
from pipeline.serve.chat_request import (
    CUSTOM_VOICE_PREFIX,
    INPUT_AUDIO_FORMATS,
    MAX_MESSAGES,
    VOICES,
    Turn,
    check_options,
    check_output,
    checked_text,
    parse_body,
    parse_turns,
)
from pipeline.serve.completion import (
    AUDIO_OUT_TOKENS_PER_SECOND,
    AUDIO_PLACEHOLDER,
    cap_text_answer,
    chat_completion,
    encoded_answer,
    estimate_tokens,
    prompt_tokens,
)
from pipeline.serve.config import MAX_REMEMBERED_AUDIO, ServerConfig
from pipeline.serve.errors import (
    SERVER_ERROR_MESSAGE,
    STATUS_ERRORS,
    ApiFailure,
    error_response,
    quoted,
    request_id,
)
from pipeline.serve.faults import FaultPlan, Gauge, HoldUntilClientLeaves, ResetConnection
from pipeline.serve.files import FilesEndpoint, FileStore
from pipeline.serve.limits import Admission, ServerRateLimits, retry_after_headers
from pipeline.serve.models import ModelsEndpoint
from pipeline.serve.record import RequestRecorder
from pipeline.serve.speech import SpeechEndpoint

if TYPE_CHECKING:
    from pipeline.engine import narrate

ENCODED_FORMATS = frozenset({"mp3", "flac", "opus", "aac"})  # encoded in the pool, sent as they come
LOGGED_REQUESTS = 1000  # the last requests /stats lists with their server-side times
BAD_KEY_MESSAGE = STATUS_ERRORS[401][2]

_WORDS_HINT = re.compile(r"\b(?:about|around|roughly|approximately|in|under)\s+(\d{1,4})\s+words\b", re.IGNORECASE)
_TITLE_LINE = re.compile(r"\ATitle: (?P<title>[^\n]*)\n+")
_DOCUMENT_LINE = re.compile(r"\A\s*Document to summarise:\s*\n+")

DEFAULT_ANSWER_WORDS = 120  # a spoken answer's length when the system prompt names none
T = TypeVar("T")


class AudioMemory:
    """Answers' audio ids → transcripts, until they expire (bounded, oldest dropped first)."""

    def __init__(self, ttl_s: int, capacity: int = MAX_REMEMBERED_AUDIO) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def remember(self, transcript: str) -> tuple[str, int]:
        audio_id = "audio_" + secrets.token_hex(12)
        expires_at = int(time.time()) + self.ttl_s
        self._items[audio_id] = (transcript, expires_at)
        while self._items and len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return audio_id, expires_at

    def transcript(self, audio_id: str) -> str | None:
        item = self._items.get(audio_id)
        if item is None or item[1] <= time.time():
            return None
        return item[0]


class ChatServer:
    """The server object behind every route: what the endpoints share (the key check, the worker pool, the fault plan
    and its jitter, the rate limiter, the request record, the audio ids of earlier answers; serve.core.ServerCore),
    the chat counters /stats reports, the endpoints beyond chat (speech, files, batches, models), and the answering
    of POST /v1/chat/completions itself."""

    def __init__(self, config: ServerConfig, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.memory = AudioMemory(config.audio_ttl_s, config.audio_memory)
        self.stats: Counter[str] = fresh_counts()
        self.wire: Counter[str] = Counter()
        self.pool: server_work.WorkerPool | None = None
        self.monotonic = monotonic
        self.limiter = ServerRateLimits(config.rpm, config.tpm, config.burst_s, monotonic)
        self.faults = FaultPlan(config.faults, config.seed)
        self.held = Gauge()  # requests the timeout fault is holding now
        # The last requests' answer kinds and server-side monotonic times (arrival; the rate limiter's decision), so
        # tests judge pacing by the server's clock, not by when their own threads happened to run.
        self.log: deque[dict[str, Any]] = deque(maxlen=LOGGED_REQUESTS)
        self.recorder = RequestRecorder(config.record) if config.record is not None else None
        # Latency and fault details (waits, which kind of bad audio) draw from their own stream, so the sequence
        # of fault kinds depends on the seed and the order of requests only.
        self.jitter = random.Random(f"audiosum-jitter-{config.seed}")
        # The endpoints beyond chat, each with its own /stats counters.
        self.speech = SpeechEndpoint(self, VOICES, CUSTOM_VOICE_PREFIX)
        store = FileStore()
        self.files = FilesEndpoint(self, store)
        self.batches = BatchesEndpoint(self, store, config.batches)
        self.models = ModelsEndpoint(self, config.shutdowns, self.recorder)

    # -- request checking -------------------------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        # Compared as bytes: a header is Latin-1 on the wire, and compare_digest refuses non-ASCII str.
        given = request.headers.get("authorization", "").encode("latin-1")
        if not given.startswith(b"Bearer ") or not secrets.compare_digest(given[7:], self.config.api_key.encode()):
            raise ApiFailure(401, BAD_KEY_MESSAGE, code="invalid_api_key")

    # -- answering --------------------------------------------------------------------------------
    async def speak(self, task: str, words: int, title: str | None, turns: list[Turn],
                    with_voice: bool = True) -> narrate.Narration:
        """The narration for the last user turn; the work itself runs in the pool, never on the event loop."""
        engine = self.config.engine
        pool = self.pool
        assert pool is not None, "the pool is made when the app starts"
        question_turn = turns[-1] if turns and turns[-1].role == "user" else None
        follow_up = question_turn is not None and any(t.role == "assistant" for t in turns[:-1])
        if question_turn is not None and question_turn.audio_parts:
            try:
                return await pool.run(server_work.hear, question_turn.audio_parts, words, title, engine,
                                           with_voice)
            except InvalidAudio as exc:
                raise ApiFailure(400, f"The input audio could not be decoded: {exc}.",
                                 param="messages", code="invalid_value") from exc
        if follow_up and question_turn is not None:
            # Answer from the document (the first user turn, when it is text) and what was said about it since;
            # earlier questions are not facts to quote back.
            first_user = next(t for t in turns if t.role == "user")
            context = "\n\n".join([first_user.text] * (not first_user.audio_parts)
                                   + [t.text for t in turns[:-1] if t.role == "assistant" and t.text])
            return await pool.run(server_work.answer, question_turn.text, context, words, engine, with_voice)
        return await pool.run(server_work.compose, task, words, title, engine, with_voice)

    async def chat_completions(self, request: Request) -> Response:
        # Every request counts once in `requests` and once in exactly one answer kind (`ok`, `rate_limited`,
        # `fault_<kind>`, `error_<status>`, `client_disconnected`), counted when the answer is decided.
        self.stats["requests"] += 1
        entry: dict[str, Any] = {"arrived_s": self.monotonic()}
        kind, response = await self.settle(self._chat(request, entry))
        self.stats[kind] += 1
        self.log.append({"kind": kind, **entry})
        if self.limiter.enabled:
            response.headers.update(self.limiter.headers())
        return response

    async def settle(self, work: Awaitable[tuple[str, Response]]) -> tuple[str, Response]:
        """`work`'s (answer kind, answer), or the kind and OpenAI-shaped answer of what it raised."""
        try:
            return await work
        except ApiFailure as failure:
            kind, response = failure.kind, failure.response()
        except ClientDisconnect:
            kind, response = "client_disconnected", Response(status_code=400)  # nobody is left to read it
        except server_work.WorkersLost:
            kind, response = "error_503", error_response(503, "The server is overloaded or not ready yet.",
                                                         error_type="server_error")
        except server_work.PoolFull:
            kind, response = "pool_full", error_response(
                503, "The server is overloaded (every worker is busy and the queue is full); retry shortly.",
                error_type="server_error", code="server_overloaded", headers=retry_after_headers(1.0))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            kind, response = "error_500", error_response(500, SERVER_ERROR_MESSAGE, error_type="server_error")
        return kind, response

    # -- what the speech and batch endpoints share (serve.core.ServerCore) ------------------------------
    @property
    def engine(self) -> server_work.Engine:
        return self.config.engine

    async def record(self, request: Request, raw: bytes) -> None:
        if self.recorder is not None:
            await self.recorder.record(request.method, request.url.path, raw)

    async def json_body(self, raw: bytes) -> dict[str, Any]:
        return await asyncio.to_thread(parse_body, raw)

    def rate_limited(self, admission: Admission, model: str) -> ApiFailure:
        return fault_answers.rate_limited(admission, model)

    async def answer_text(self, body: dict[str, Any]) -> dict[str, Any]:
        """A text-only answer to a chat request body (a batch line): no audio models, no audio in or out."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiFailure(400, "You must provide a model parameter.", param="model")
        if "audio" in checked_text(model, "model"):
            raise ApiFailure(400, f"The model {quoted(model)} is not supported by the Batch API (it takes no audio "
                             "models).", param="model", code="model_not_supported")
        if check_output(body)[1] is not None:
            raise ApiFailure(400, "Batch requests answer text only.", param="modalities", code="invalid_value")
        cap = check_options(body)
        turns = await asyncio.to_thread(parse_turns, body.get("messages"), self.memory.transcript)
        if any(t.audio_parts for t in turns):
            raise ApiFailure(400, "Batch requests take no audio input.", param="messages", code="invalid_value")
        answer, _ = await self._answer(model, turns, None, None)
        if cap is not None:
            cap_text_answer(answer, cap)
        return answer

    async def _chat(self, request: Request, entry: dict[str, Any]) -> tuple[str, Response]:
        self.check_auth(request)
        # Faults are drawn before validation and rate limiting, and a faulted request consumes no rate-limit
        # budget: on the real service resets, gateway 5xx and stalls happen in front of the per-organisation
        # limiter, and keeping them out of the buckets makes a benchmark's ideal makespan depend on the limits only.
        fault = self.faults.draw()
        raw = await request.body()
        await self.record(request, raw)
        if fault is not None:
            return f"fault_{fault}", await self.answer_fault(fault, raw)
        body = await asyncio.to_thread(parse_body, raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiFailure(400, "You must provide a model parameter.", param="model")
        checked_text(model, "model")
        modalities, voice, audio_format = check_output(body)
        cap = check_options(body)
        self.count_shape(body)  # before the checks below, so refused requests are counted too
        # Off the loop: up to 5 MB of text to check and 25 MB of base64 audio to decode (parse_turns only reads).
        turns = await asyncio.to_thread(parse_turns, body.get("messages"), self.memory.transcript)
        has_audio_in = any(t.audio_parts for t in turns)
        if "audio" not in modalities and not has_audio_in and "audio" in model:
            # The audio models need audio on one side; text models (e.g. gpt-4o-mini) answer text with text.
            raise ApiFailure(400, "This model requires that either input content or output modality contain "
                             "audio.", param="modalities", code="invalid_value")
        if self.limiter.enabled:
            admission = self.limiter.admit(sum(prompt_tokens(turns)))
            entry["limiter_s"] = self.monotonic()
            if not admission.admitted:
                raise fault_answers.rate_limited(admission, model)
        answer, audio = await _unless_client_leaves(request, self._answer(model, turns, voice, audio_format))
        if cap is not None and voice is None:
            cap_text_answer(answer, cap)
        self.limiter.charge(answer["usage"]["completion_tokens"])
        data = await asyncio.to_thread(encoded_answer, answer, audio)
        await self.latency()
        return "ok", Response(data, media_type="application/json", headers={"x-request-id": request_id()})

    async def latency(self) -> None:
        low, high = self.config.latency_s
        if high > 0:
            await asyncio.sleep(self.jitter.uniform(low, high))

    async def answer_fault(self, fault: str, raw: bytes) -> Response:
        """The answer for an injected fault (errors come back as ApiFailure's response, not raised)."""
        if fault == "reset":
            return ResetConnection()
        if fault == "timeout":
            return HoldUntilClientLeaves(self.held)
        if fault in ("badjson", "badaudio", "truncated"):
            await self.latency()
            model = fault_answers.model_of(raw)
            return fault_answers.broken_success(fault, model, self.jitter, self.memory.remember, self.config.engine)
        wait_s = self.jitter.uniform(*self.config.fault_retry_after_s)
        return fault_answers.fault_failure(fault, wait_s, fault_answers.model_of(raw)).response()

    async def _answer(self, model: str, turns: list[Turn], voice: str | None,
                      audio_format: str | None) -> tuple[dict[str, Any], tuple[bytes, str] | None]:
        """The answer, with its audio (WAV bytes and the format asked for) left out: encoded_answer puts it in."""
        instructions = " ".join(t.text for t in turns if t.role in ("system", "developer"))
        hint = _WORDS_HINT.search(instructions)
        words = max(10, min(2000, int(hint.group(1)))) if hint else DEFAULT_ANSWER_WORDS
        last_user = next((t for t in reversed(turns) if t.role == "user"), None)
        task, title = self._strip_layout(last_user.text if last_user else "")
        if not task.strip() and not (last_user and last_user.audio_parts):
            raise ApiFailure(400, "The last user message has no text or audio to work on.", param="messages")
        narration = await self.speak(task, words, title, turns, with_voice=voice is not None)
        transcript = narration.transcript or "There was nothing in the text that could be spoken."
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        completion_audio_tokens = 0
        audio = None
        if voice is not None:
            audio_id, expires_at = self.memory.remember(transcript)
            audio = (narration.audio.wav, audio_format or "wav")
            if audio_format in ENCODED_FORMATS:
                assert self.pool is not None
                audio = (await self.pool.run(server_work.encode_answer, narration.audio.wav, audio_format),
                         audio_format)
            message["audio"] = {"id": audio_id, "expires_at": expires_at, "data": AUDIO_PLACEHOLDER,
                                "transcript": transcript}
            completion_audio_tokens = math.ceil(narration.audio.duration_s * AUDIO_OUT_TOKENS_PER_SECOND)
        else:
            message["content"] = transcript
        completion_text = estimate_tokens(transcript)
        return chat_completion(model, message, prompt_tokens(turns), (completion_text, completion_audio_tokens),
                           self.config.engine), audio

    @staticmethod
    def _strip_layout(text: str) -> tuple[str, str | None]:
        """Read audiosum's own user-message layout ("Title: …", "Document to summarise:") if present."""
        title = None
        match = _TITLE_LINE.match(text)
        if match:
            title, text = match.group("title").strip() or None, text[match.end():]
        return _DOCUMENT_LINE.sub("", text, count=1), title

    def count_shape(self, body: dict[str, Any]) -> None:
        """What well-formed requests carried, for tests that check the wire: modalities, input_audio parts and
        their formats, and how earlier assistant turns came back (by audio id or as text)."""
        self.wire["modalities=" + ",".join(body.get("modalities") or ["text"])] += 1
        messages = body.get("messages")
        if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
            return  # refused by parse_turns; not worth a walk over
        for message in messages:
            if not isinstance(message, dict):
                continue
            if message.get("role") == "assistant":
                self.wire["assistant_audio_id" if message.get("audio") else "assistant_text"] += 1
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "input_audio":
                    given = part.get("input_audio")
                    audio_format = given.get("format") if isinstance(given, dict) else None
                    # Only known names become counter keys: a client must not grow /stats with its own strings.
                    known = isinstance(audio_format, str) and audio_format in INPUT_AUDIO_FORMATS
                    self.wire["input_audio"] += 1
                    self.wire[f"input_audio_format={audio_format if known else 'other'}"] += 1


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientDisconnect as soon as the client hangs up, with `work` cancelled (a job still
    queued for the pool is dropped; one already running is abandoned). The body has been read, so the next
    message the server has for this request is the disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnect()


async def _until_disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def fresh_counts() -> Counter[str]:
    return Counter({"requests": 0, "ok": 0})
