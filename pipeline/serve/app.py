"""`audiosum serve`: an OpenAI-compatible Chat Completions audio endpoint over the offline engine, and the routes
and wiring of the others (speech.py: /v1/audio/speech; files.py: /v1/files; batches.py: /v1/batches).

The peer the test suite talks to over loopback; it speaks the wire format, validates like the real service (every
malformed field is a 400 naming its param, never a 500), and never calls out to any network. The event loop only
moves bytes: all summarising, speaking and hearing runs in the worker pool (server_work), parsing a body and encoding
an answer run in a thread, and what a request may send is bounded in front of the app (server_guard).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import math
import random
import re
import secrets
import sys
import threading
import time
import traceback
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.errors import InvalidAudio
from pipeline.serve import client_json
from pipeline.serve import work as server_work
from pipeline.serve.batches import BatchesEndpoint, BatchSettings
from pipeline.serve.errors import (
    MAX_QUOTED,
    SERVER_ERROR_MESSAGE,
    STATUS_ERRORS,
    ApiFailure,
    error_response,
    json_response,
    quoted,
    request_id,
)
from pipeline.serve.faults import (
    STATUS_FAULTS,
    ConnectionExposingProtocol,
    FaultPlan,
    Gauge,
    HoldUntilClientLeaves,
    ResetConnection,
    TruncatedResponse,
    parse_faults,
)
from pipeline.serve.feed import FeedFolder
from pipeline.serve.files import FilesEndpoint, FileStore
from pipeline.serve.guard import (
    HEADER_BYTES,
    LOOPBACK_NAMES,
    GuardLimits,
    RequestGuard,
    connection_limit,
    guarded_protocol,
)
from pipeline.serve.limits import Admission, ServerRateLimits, format_duration, retry_after_headers
from pipeline.serve.speech import SPEECH_MODELS, SpeechEndpoint

if TYPE_CHECKING:
    from pipeline.engine import narrate

KNOWN_FORMATS = frozenset({"wav", "pcm16", "mp3", "flac", "opus", "aac"})
ENCODED_FORMATS = frozenset({"mp3", "flac", "opus", "aac"})  # encoded in the pool, sent as they come
INPUT_AUDIO_FORMATS = frozenset({"wav", "mp3"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# This server's own accounting convention for audio tokens (the real service does not publish a rate).
AUDIO_OUT_TOKENS_PER_SECOND = 20  # as the real audio models bill a spoken second (a heard one: 10, see _prompt_tokens)
MAX_REMEMBERED_AUDIO = 10_000
LOGGED_REQUESTS = 1000  # the last requests /stats lists with their server-side times
# The models this server answers for (GET /v1/models, /v1/models/{id}); its own list, not the client's default.
MODELS = ("gpt-audio-1.5", "gpt-audio", "gpt-audio-mini", "gpt-4o-audio-preview", "gpt-4o-mini-audio-preview",
          "gpt-4o-mini", "gpt-4.1-mini", *SPEECH_MODELS)
MODELS_CREATED = 1_700_000_000
CUSTOM_VOICE_PREFIX = "voice_"  # a custom voice reference {"id": "voice_..."} is answered as if a known voice
ORGANIZATION = "org-audiosum"
RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"
BAD_KEY_MESSAGE = STATUS_ERRORS[401][2]
# Bounds on the shape of one request, so that validating it stays cheap on the event loop.
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 4096                  # across all messages
# A request's text (all its messages together, UTF-8): the page cap of the client's fetcher, declared here rather
# than imported, as the voice list is.
MAX_TEXT_BYTES = 5 * 1024 * 1024
_B64_CHUNK = 3 * 256 * 1024               # base64 is encoded and decoded in pieces, so a thread lets go of the GIL
# Stands for the answer's base64 audio while the rest of it is dumped: unguessable, so no client string contains it.
_AUDIO_PLACEHOLDER = "audio-" + secrets.token_hex(16)

_WORDS_HINT = re.compile(r"\b(?:about|around|roughly|approximately|in|under)\s+(\d{1,4})\s+words\b", re.IGNORECASE)
_TITLE_LINE = re.compile(r"\ATitle: (?P<title>[^\n]*)\n+")
_DOCUMENT_LINE = re.compile(r"\A\s*Document to summarise:\s*\n+")

# The voices the real API takes for chat audio, as its reference lists them; declared here, not borrowed from the
# client, so a wrong assumption in the client cannot pass its own peer.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin",
          "cedar")
DEFAULT_ANSWER_WORDS = 120  # a spoken answer's length when the system prompt names none
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: Literal["local", "tone"] = "local"
    api_key: str | None = field(default=None, repr=False)
    audio_ttl_s: int = 3600
    audio_memory: int = MAX_REMEMBERED_AUDIO              # ids kept; the oldest are forgotten (0: forget at once)
    workers: int = 2
    rpm: int = 0                                          # 0 = no limit
    tpm: int = 0                                          # 0 = no limit
    burst_s: float = 1.0                                  # bucket capacity, in seconds of refill
    latency_s: tuple[float, float] = (0.0, 0.0)           # extra wait before each 200 answer, uniform in range
    faults: tuple[tuple[str, float], ...] = ()            # (kind, probability), see server_faults.FAULT_KINDS
    seed: int = 0
    fault_retry_after_s: tuple[float, float] = (0.05, 0.5)  # the wait an injected `429` fault announces
    feed_dir: Path | None = None                          # serve this output folder's podcast files at /feed/
    feed_only: bool = False                               # serve nothing but the feed (no API, no /stats)
    limits: GuardLimits = field(default_factory=GuardLimits)
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES       # Host header values answered (server_guard.allowed_hosts)
    record: Path | None = None                            # append each API request (method, path, body) here
    shutdowns: tuple[tuple[str, str], ...] = ()           # (model, YYYY-MM-DD): the shutdown_date GET models shows
    batches: BatchSettings = field(default_factory=BatchSettings)  # --batch-delay, --batch-expire


@dataclass(slots=True)
class _Turn:
    role: str
    text: str
    audio_parts: list[tuple[bytes, str]]


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
    def __init__(self, config: ServerConfig, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.memory = AudioMemory(config.audio_ttl_s, config.audio_memory)
        self.stats: Counter[str] = _fresh_counts()
        self.wire: Counter[str] = Counter()
        self.models_stats: Counter[str] = Counter()  # GET /v1/models and /v1/models/{id}
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

    # -- request checking -------------------------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        # Compared as bytes: a header is Latin-1 on the wire, and compare_digest refuses non-ASCII str.
        given = request.headers.get("authorization", "").encode("latin-1")
        if not given.startswith(b"Bearer ") or not secrets.compare_digest(given[7:], self.config.api_key.encode()):
            raise ApiFailure(401, BAD_KEY_MESSAGE, code="invalid_api_key")

    def parse_turns(self, messages: Any) -> list[_Turn]:
        if not isinstance(messages, list) or not messages:
            raise ApiFailure(400, "'messages' must be a non-empty array.", param="messages")
        if len(messages) > MAX_MESSAGES:
            raise ApiFailure(400, f"'messages' has {len(messages)} items; at most {MAX_MESSAGES} are accepted.",
                             param="messages", code="array_above_max_length")
        turns: list[_Turn] = []
        parts = text_bytes = 0
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                raise ApiFailure(400, f"'{where}' must be an object.", param=where, code="invalid_type")
            role = message.get("role")
            if not isinstance(role, str) or role not in ROLES:
                raise ApiFailure(400, f"Invalid value for '{where}.role': {quoted(role)}; expected one of "
                                 f"{sorted(ROLES)}.", param=f"{where}.role", code="invalid_value")
            audio_ref = message.get("audio")
            if role == "assistant" and audio_ref is not None:
                turns.append(self._remembered_turn(audio_ref, where))
                continue
            content = message.get("content")
            parts += len(content) if isinstance(content, list) else 0
            if parts > MAX_CONTENT_PARTS:
                raise ApiFailure(400, f"The messages have more than {MAX_CONTENT_PARTS} content parts.",
                                 param=f"{where}.content", code="array_above_max_length")
            turn = self._content_turn(role, content, where)
            text_bytes += len(turn.text.encode("utf-8"))
            if text_bytes > MAX_TEXT_BYTES:
                raise _text_too_long(f"{where}.content")
            turns.append(turn)
        return turns

    def _remembered_turn(self, audio_ref: Any, where: str) -> _Turn:
        """An earlier answer given back by its audio id: its transcript, while it is remembered."""
        audio_id = audio_ref.get("id") if isinstance(audio_ref, dict) else None
        if not isinstance(audio_id, str):
            raise ApiFailure(400, f"'{where}.audio' must be an object with an 'id'.", param=f"{where}.audio",
                             code="invalid_type")
        transcript = self.memory.transcript(audio_id)
        if transcript is None:
            raise ApiFailure(400, f"Audio with id {quoted(audio_id)} was not found or has expired.",
                             param=f"{where}.audio.id", code="invalid_value")
        return _Turn("assistant", transcript, [])

    @staticmethod
    def _content_turn(role: str, content: Any, where: str) -> _Turn:
        if isinstance(content, str):
            return _Turn(role, _text(content, f"{where}.content"), [])
        if content is None and role == "assistant":
            return _Turn(role, "", [])
        if not isinstance(content, list):
            raise ApiFailure(400, f"'{where}.content' must be a string or an array of content parts.",
                             param=f"{where}.content", code="invalid_type")
        texts: list[str] = []
        audio: list[tuple[bytes, str]] = []
        for part_index, part in enumerate(content):
            param = f"{where}.content[{part_index}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(_text(part["text"], f"{param}.text"))
            elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
                audio.append(ChatServer._input_audio(part["input_audio"], param))
            else:
                raise ApiFailure(400, f"Invalid content part at '{param}'.", param=param, code="invalid_value")
        return _Turn(role, "\n\n".join(texts), audio)

    @staticmethod
    def _input_audio(value: dict[str, Any], param: str) -> tuple[bytes, str]:
        audio_format = value.get("format")
        if not isinstance(audio_format, str) or audio_format not in INPUT_AUDIO_FORMATS:
            raise ApiFailure(400, f"Invalid value for '{param}.input_audio.format': {quoted(audio_format)}; "
                             "expected 'wav' or 'mp3'.", param=f"{param}.input_audio.format", code="invalid_value")
        encoded = value.get("data")
        if not isinstance(encoded, str):
            raise ApiFailure(400, f"'{param}.input_audio.data' must be a base64 string.",
                             param=f"{param}.input_audio.data", code="invalid_type")
        try:
            data = _b64decode(encoded)
        except (binascii.Error, ValueError) as exc:
            raise ApiFailure(400, f"'{param}.input_audio.data' is not valid base64.",
                             param=f"{param}.input_audio.data") from exc
        if not data:
            raise ApiFailure(400, f"'{param}.input_audio.data' is empty.", param=f"{param}.input_audio.data")
        return data, audio_format

    @staticmethod
    def check_output(body: dict[str, Any]) -> tuple[list[str], str | None, str | None]:
        modalities = body.get("modalities", ["text"])
        if (not isinstance(modalities, list) or not modalities
                or any(not isinstance(m, str) or m not in ("text", "audio") for m in modalities)):
            raise ApiFailure(400, "Invalid value for 'modalities': expected a list of 'text' and 'audio'.",
                             param="modalities", code="invalid_value")
        audio = body.get("audio")
        if "audio" not in modalities:
            if audio is not None:
                raise ApiFailure(400, "'audio' was given but 'modalities' does not include 'audio'.",
                                 param="modalities")
            return modalities, None, None
        if not isinstance(audio, dict):
            raise ApiFailure(400, "'audio' is required when 'modalities' includes 'audio'.", param="audio")
        voice, audio_format = audio.get("voice"), audio.get("format")
        if isinstance(voice, dict) and set(voice) == {"id"} and isinstance(voice["id"], str) \
                and voice["id"].startswith(CUSTOM_VOICE_PREFIX) and len(voice["id"]) > len(CUSTOM_VOICE_PREFIX):
            voice = VOICES[0]  # a custom voice: this server has none of its own, so a built-in one speaks
        if not isinstance(voice, str) or voice not in VOICES:
            raise ApiFailure(400, f"Invalid value for 'audio.voice': {quoted(voice)}. Supported values are: "
                             + ", ".join(repr(v) for v in VOICES) + ".", param="audio.voice",
                             code="invalid_value")
        if not isinstance(audio_format, str) or audio_format not in KNOWN_FORMATS:
            raise ApiFailure(400, f"Invalid value for 'audio.format': {quoted(audio_format)}.", param="audio.format",
                             code="invalid_value")
        return modalities, voice, audio_format

    @staticmethod
    def check_options(body: dict[str, Any]) -> int | None:
        """Refuse what this server would otherwise silently ignore; returns the completion token cap, if any."""
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise ApiFailure(400, f"Invalid type for 'stream': expected a boolean, got {quoted(stream)}.",
                             param="stream", code="invalid_type")
        if stream:
            raise ApiFailure(400, "Streaming is not supported by this server; send 'stream': false.",
                             param="stream", code="unsupported_value")
        choices = body.get("n")
        if choices is not None:
            if not _is_int(choices):
                raise ApiFailure(400, f"Invalid type for 'n': expected an integer, got {quoted(choices)}.",
                                 param="n", code="invalid_type")
            if choices < 1:
                raise ApiFailure(400, f"Invalid value for 'n': {choices}; it must be at least 1.", param="n",
                                 code="invalid_value")
            if choices > 1:
                raise ApiFailure(400, f"This server gives one choice per request, not n={choices}.", param="n",
                                 code="unsupported_value")
        caps = {name: body.get(name) for name in ("max_completion_tokens", "max_tokens")
                if body.get(name) is not None}
        for name, cap in caps.items():
            if not _is_int(cap) or not isinstance(cap, int):
                raise ApiFailure(400, f"Invalid type for '{name}': expected an integer, got {quoted(cap)}.",
                                 param=name, code="invalid_type")
            if cap <= 0:
                raise ApiFailure(400, f"Invalid value for '{name}': {cap}; a token cap must be positive.",
                                 param=name, code="unsupported_value")
        return next(iter(caps.values()), None)

    # -- answering --------------------------------------------------------------------------------
    async def speak(self, task: str, words: int, title: str | None, turns: list[_Turn],
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
        return await asyncio.to_thread(_parse_body, raw)

    def rate_limited(self, admission: Admission, model: str) -> ApiFailure:
        return _rate_limited(admission, model)

    async def answer_text(self, body: dict[str, Any]) -> dict[str, Any]:
        """A text-only answer to a chat request body (a batch line): no audio models, no audio in or out."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiFailure(400, "You must provide a model parameter.", param="model")
        if "audio" in _text(model, "model"):
            raise ApiFailure(400, f"The model {quoted(model)} is not supported by the Batch API (it takes no audio "
                             "models).", param="model", code="model_not_supported")
        if self.check_output(body)[1] is not None:
            raise ApiFailure(400, "Batch requests answer text only.", param="modalities", code="invalid_value")
        cap = self.check_options(body)
        turns = await asyncio.to_thread(self.parse_turns, body.get("messages"))
        if any(t.audio_parts for t in turns):
            raise ApiFailure(400, "Batch requests take no audio input.", param="messages", code="invalid_value")
        answer, _ = await self._answer(model, turns, None, None)
        if cap is not None:
            _cap_text_answer(answer, cap)
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
        body = await asyncio.to_thread(_parse_body, raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiFailure(400, "You must provide a model parameter.", param="model")
        _text(model, "model")
        modalities, voice, audio_format = self.check_output(body)
        cap = self.check_options(body)
        self.count_shape(body)  # before the checks below, so refused requests are counted too
        # Off the loop: up to 5 MB of text to check and 25 MB of base64 audio to decode (parse_turns only reads).
        turns = await asyncio.to_thread(self.parse_turns, body.get("messages"))
        has_audio_in = any(t.audio_parts for t in turns)
        if "audio" not in modalities and not has_audio_in and "audio" in model:
            # The audio models need audio on one side; text models (e.g. gpt-4o-mini) answer text with text.
            raise ApiFailure(400, "This model requires that either input content or output modality contain "
                             "audio.", param="modalities", code="invalid_value")
        if self.limiter.enabled:
            admission = self.limiter.admit(sum(_prompt_tokens(turns)))
            entry["limiter_s"] = self.monotonic()
            if not admission.admitted:
                raise _rate_limited(admission, model)
        answer, audio = await _unless_client_leaves(request, self._answer(model, turns, voice, audio_format))
        if cap is not None and voice is None:
            _cap_text_answer(answer, cap)
        self.limiter.charge(answer["usage"]["completion_tokens"])
        data = await asyncio.to_thread(_encoded_answer, answer, audio)
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
            return self._broken_success(fault, _model_of(raw))
        return _fault_failure(fault, self.jitter.uniform(*self.config.fault_retry_after_s), _model_of(raw)).response()

    def _broken_success(self, fault: str, model: str) -> Response:
        headers = {"x-request-id": request_id()}
        spoken = ["Here is a short spoken summary of the document."]
        if fault == "badaudio":
            # Vary between the two ways audio can be unusable: not base64 at all, and base64 of bytes that are
            # not a WAV (an MP3-looking header followed by noise).
            data = ("UklGR%not-base64!" if self.jitter.random() < 0.5
                    else base64.b64encode(b"ID3\x04\x00\x00" + self.jitter.randbytes(2048)).decode("ascii"))
        else:
            data = _placeholder_wav_base64(spoken[0])
        audio_id, expires_at = self.memory.remember(spoken[0])
        message = {"role": "assistant", "content": None, "refusal": None,
                   "audio": {"id": audio_id, "expires_at": expires_at, "data": data, "transcript": spoken[0]}}
        body = json.dumps(_completion(model, message, (20, 0), (12, 30), self.config.engine)).encode()
        if fault == "badjson":
            # A 200 whose body stops halfway (with a correct Content-Length): a proxy cut it, not the connection.
            return Response(body[: len(body) // 2], media_type="application/json", headers=headers)
        if fault == "truncated":
            return TruncatedResponse(body, media_type="application/json", headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def _answer(self, model: str, turns: list[_Turn], voice: str | None,
                      audio_format: str | None) -> tuple[dict[str, Any], tuple[bytes, str] | None]:
        """The answer, with its audio (WAV bytes and the format asked for) left out: _encoded_answer puts it in."""
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
            message["audio"] = {"id": audio_id, "expires_at": expires_at, "data": _AUDIO_PLACEHOLDER,
                                "transcript": transcript}
            completion_audio_tokens = math.ceil(narration.audio.duration_s * AUDIO_OUT_TOKENS_PER_SECOND)
        else:
            message["content"] = transcript
        completion_text = _estimate_tokens(transcript)
        return _completion(model, message, _prompt_tokens(turns), (completion_text, completion_audio_tokens),
                           self.config.engine), audio

    @staticmethod
    def _strip_layout(text: str) -> tuple[str, str | None]:
        """Read audiosum's own user-message layout ("Title: …", "Document to summarise:") if present."""
        title = None
        match = _TITLE_LINE.match(text)
        if match:
            title, text = match.group("title").strip() or None, text[match.end():]
        return _DOCUMENT_LINE.sub("", text, count=1), title

    def model_object(self, model: str) -> dict[str, Any]:
        """The Model object: shutdown_date only when one was announced (--shutdown)."""
        found: dict[str, Any] = {"id": model, "object": "model", "created": MODELS_CREATED, "owned_by": "audiosum"}
        shutdown = dict(self.config.shutdowns).get(model)
        if shutdown is not None:
            found["shutdown_date"] = shutdown
        return found

    async def models(self, request: Request) -> Response:
        """GET /v1/models, and GET /v1/models/{model} (404 in OpenAI's shape for a model this server lacks).

        Counted apart from the chat requests (/stats `models`: requests, ok, error_<status>), so a run's model
        check does not change what /stats counts as its requests."""
        self.models_stats["requests"] += 1
        try:
            self.check_auth(request)
            if self.recorder is not None:
                await self.recorder.record(request.method, request.url.path, await request.body())
            model = request.path_params.get("model")
            if model is None:
                body: dict[str, Any] = {"object": "list", "data": [self.model_object(m) for m in MODELS]}
            elif model in MODELS:
                body = self.model_object(model)
            else:
                raise ApiFailure(404, f"The model {quoted(model)} does not exist or you do not have access to it.",
                                 code="model_not_found")
        except ApiFailure as failure:
            self.models_stats[f"error_{failure.status}"] += 1
            return failure.response()
        self.models_stats["ok"] += 1
        return json_response(body, headers={"x-request-id": request_id()})

    async def stats_endpoint(self, request: Request) -> Response:
        """The counters (behind the key when there is one: they reveal what clients sent). Not counted themselves."""
        try:
            self.check_auth(request)
        except ApiFailure as failure:
            return failure.response()
        pool = self.pool
        jobs = {} if pool is None else {"pool": {"jobs": pool.admitted, "capacity": pool.capacity,
                                                 "dropped": pool.dropped}}
        return json_response({"engine": self.config.engine, "counts": dict(self.stats), "wire": dict(self.wire),
                              "models": dict(self.models_stats), **self.endpoint_stats(),
                              "held": self.held.value, "log": list(self.log), **jobs})

    def endpoint_stats(self) -> dict[str, Any]:
        return {"speech": dict(self.speech.stats), "files": {**self.files.stats, **self.files.store.counts()},
                "batches": dict(self.batches.stats)}

    async def stats_reset(self, request: Request) -> Response:
        """Zero the counters; answers with the counts as they were, so reading and zeroing is one step."""
        try:
            self.check_auth(request)
        except ApiFailure as failure:
            return failure.response()
        counts, self.stats = dict(self.stats), _fresh_counts()
        wire, self.wire = dict(self.wire), Counter()
        self.models_stats = Counter()
        for endpoint_counts in (self.speech.stats, self.files.stats, self.batches.stats):
            endpoint_counts.clear()
            endpoint_counts.update({"requests": 0, "ok": 0})
        self.log.clear()
        return json_response({"engine": self.config.engine, "counts": counts, "wire": wire})

    async def set_faults(self, request: Request) -> Response:
        """Replace the injected faults while serving: {"faults": "404=1", "seed": 0} as --faults/--seed take them,
        so one server can play every fault in turn. Answers with the faults as they were; not counted."""
        try:
            self.check_auth(request)
            body = _parse_body(await request.body())
            seed = body.get("seed", 0)
            if not _is_int(seed):
                raise ApiFailure(400, "'seed' must be an integer.", param="seed", code="invalid_type")
            try:
                faults = parse_faults(body.get("faults") if isinstance(body.get("faults"), str) else None)
            except ValueError as exc:
                raise ApiFailure(400, f"Invalid value for 'faults': {exc}", param="faults",
                                 code="invalid_value") from exc
        except ApiFailure as failure:
            return failure.response()
        before, self.faults = self.faults, FaultPlan(faults, seed)
        self.jitter = random.Random(f"audiosum-jitter-{seed}")  # as a server started with this seed
        return json_response({"faults": dict(before.faults)})

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


@functools.cache
def _placeholder_wav_base64(sentence: str) -> str:
    """The broken-answer faults' audio: one fixed sentence of tone, made once (the engine loads only if needed)."""
    from pipeline.engine import tone

    return base64.b64encode(tone.tone([sentence]).wav).decode("ascii")


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or the 400 a malformed, over-nested or token-bomb body gets. Runs in a thread."""
    try:
        body = client_json.loads(raw)
    except client_json.RefusedJson as refused:
        if refused.shape:
            raise ApiFailure(400, f"The JSON body is refused: {refused.why}; this server accepts requests of ordinary "
                             "shape only.", code="invalid_value") from refused
        raise ApiFailure(400, "We could not parse the JSON body of your request.") from refused
    if not isinstance(body, dict):
        raise ApiFailure(400, "The request body must be a JSON object.")
    return body


def _text(value: str, param: str) -> str:
    """A client's string, if it is real Unicode (a lone surrogate, legal in JSON escapes, could not be spoken or
    encoded in the answer) and within the text cap."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ApiFailure(400, f"'{param}' is not valid Unicode (it contains a lone surrogate).", param=param,
                         code="invalid_value") from exc
    if size > MAX_TEXT_BYTES:
        raise _text_too_long(param)
    return value


def _text_too_long(param: str) -> ApiFailure:
    return ApiFailure(400, f"The request's text is longer than this server accepts ({MAX_TEXT_BYTES // (1024 * 1024)} "
                      f"MB of UTF-8 across all messages); it went over at '{param}'.", param=param,
                      code="string_above_max_length")


def _b64decode(encoded: str) -> bytes:
    """base64.b64decode(encoded, validate=True), in pieces: each is a short C call, so the loop gets the GIL back."""
    step = _B64_CHUNK // 3 * 4
    if len(encoded) <= step:
        return base64.b64decode(encoded, validate=True)
    return b"".join(base64.b64decode(encoded[i:i + step], validate=True) for i in range(0, len(encoded), step))


def _encoded_answer(answer: dict[str, Any], audio: tuple[bytes, str] | None) -> bytes:
    """The answer as JSON bytes, with the audio base64-encoded into it in pieces (json.dumps of a 50 MB string
    holds the GIL for half a second). Runs in a thread."""
    text = json.dumps(answer, separators=(",", ":")).encode("ascii")
    if audio is None:
        return text
    wav, audio_format = audio
    data = memoryview(_pcm_frames(wav) if audio_format == "pcm16" else wav)  # wav, or already encoded
    head, tail = text.split(f'"{_AUDIO_PLACEHOLDER}"'.encode("ascii"), 1)
    pieces = (base64.b64encode(data[i:i + _B64_CHUNK]) for i in range(0, len(data), _B64_CHUNK))
    return b"".join([head, b'"', *pieces, b'"', tail])


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fresh_counts() -> Counter[str]:
    return Counter({"requests": 0, "ok": 0})


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def _prompt_tokens(turns: list[_Turn]) -> tuple[int, int]:
    """(text, audio) prompt tokens: about 4 characters a token plus 4 a message, and 1 per 3200 audio bytes."""
    text = sum(_estimate_tokens(t.text) + 4 for t in turns)
    audio = sum(math.ceil(len(d) / 3200) for t in turns for d, _ in t.audio_parts)
    return text, audio


def _completion(model: str, message: dict[str, Any], prompt: tuple[int, int], completion: tuple[int, int],
                engine: str) -> dict[str, Any]:
    """A chat.completion body; `prompt` and `completion` are (text, audio) token counts."""
    prompt_text, prompt_audio = prompt
    completion_text, completion_audio = completion
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_text + prompt_audio,
            "completion_tokens": completion_text + completion_audio,
            "total_tokens": prompt_text + prompt_audio + completion_text + completion_audio,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": prompt_audio, "text_tokens": prompt_text},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": completion_audio,
                                          "text_tokens": completion_text, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": f"audiosum-{engine}",
    }


def _cap_text_answer(answer: dict[str, Any], max_tokens: int) -> None:
    """Cut a text answer at max_completion_tokens, as the real service does (finish_reason "length")."""
    choice = answer["choices"][0]
    content = choice["message"].get("content") or ""
    if _estimate_tokens(content) <= max_tokens:
        return
    choice["message"]["content"] = content[: max_tokens * 4].rsplit(" ", 1)[0]
    choice["finish_reason"] = "length"
    usage = answer["usage"]
    usage["total_tokens"] -= usage["completion_tokens"] - max_tokens
    usage["completion_tokens"] = usage["completion_tokens_details"]["text_tokens"] = max_tokens


def _model_of(raw: bytes) -> str:
    try:
        body = client_json.loads(raw)
    except client_json.RefusedJson:
        return MODELS[0]
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else MODELS[0]


def _rate_limited(admission: Admission, model: str) -> ApiFailure:
    """The real limiter's 429, in OpenAI's words."""
    kind = admission.limited_by or "requests"
    per_minute = f"{kind} per min ({'RPM' if kind == 'requests' else 'TPM'})"
    if admission.too_large:
        # No retry-after: waiting cannot help a request larger than a whole minute's budget.
        return ApiFailure(429, f"Request too large for {model} in organization {ORGANIZATION} on {per_minute}: "
                          f"Limit {admission.limit}, Requested {admission.requested}. The input or output tokens "
                          f"must be reduced in order to run successfully. Visit {RATE_LIMITS_URL} to learn more.",
                          code="rate_limit_exceeded", error_type=kind, kind="rate_limited")
    headers = retry_after_headers(admission.wait_s)
    return ApiFailure(429, f"Rate limit reached for {kind} in organization {ORGANIZATION} on {per_minute}: "
                      f"Limit {admission.limit}, Requested {admission.requested}. Please try again in "
                      f"{format_duration(int(headers['retry-after-ms']) / 1000)}. Visit {RATE_LIMITS_URL} to learn "
                      "more.", code="rate_limit_exceeded", error_type=kind, headers=headers, kind="rate_limited")


def _fault_failure(fault: str, wait_s: float, model: str) -> ApiFailure:
    """The error answer of an injected fault that is an HTTP error."""
    kind = f"fault_{fault}"
    if fault == "429":
        headers = retry_after_headers(wait_s)
        return ApiFailure(429, f"Rate limit reached for requests in organization {ORGANIZATION} on requests per min "
                          f"(RPM). Please try again in {format_duration(int(headers['retry-after-ms']) / 1000)}. "
                          f"Visit {RATE_LIMITS_URL} to learn more.", code="rate_limit_exceeded",
                          error_type="requests", headers=headers, kind=kind)
    if fault == "429-no-retry-after":
        return ApiFailure(429, f"Rate limit reached for requests in organization {ORGANIZATION} on requests per min "
                          f"(RPM). Visit {RATE_LIMITS_URL} to learn more.", code="rate_limit_exceeded",
                          error_type="requests", kind=kind)
    if fault == "quota":
        return ApiFailure(429, "You exceeded your current quota, please check your plan and billing details. For "
                          "more information on this error, read the docs: "
                          "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                          code="insufficient_quota", error_type="insufficient_quota", kind=kind)
    if fault in STATUS_FAULTS:
        status = int(fault)
        error_type, code, message = STATUS_ERRORS[status]
        return ApiFailure(status, message.replace("{model}", model[:MAX_QUOTED]), code=code, error_type=error_type,
                          kind=kind)
    raise ValueError(f"no error answer for fault {fault!r}")


class RequestRecorder:
    """`serve --record FILE`: each API request as one JSON line {"method", "path", "body"} appended to FILE, the body
    as the client sent it (UTF-8 text; bytes that are not UTF-8 are replaced). Headers are never written: they carry
    the key. Writes run in a thread, one line at a time, so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    async def record(self, method: str, path: str, raw: bytes) -> None:
        line = json.dumps({"method": method, "path": path, "body": raw.decode("utf-8", "replace")},
                          separators=(",", ":")) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)


def _pcm_frames(wav: bytes) -> bytes:
    import io
    import wave

    with wave.open(io.BytesIO(wav), "rb") as reader:
        return reader.readframes(reader.getnframes())


def create_app(config: ServerConfig) -> Starlette:
    chat = ChatServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not config.feed_only:
            chat.pool = server_work.WorkerPool(config.engine, config.workers)
            await chat.pool.warm()  # before the port is bound, for the engines that want it
        what = "the podcast feed only" if config.feed_only else f"/v1 (engine {config.engine})"
        print(f"audiosum serve: http://{_url_host(config.host)}:{config.port} serves {what}",
              file=sys.stderr, flush=True)
        try:
            yield
        finally:
            chat.batches.shutdown()
            if chat.pool is not None:
                chat.pool.shutdown()

    async def not_found(request: Request, exc: Exception) -> Response:
        where = quoted(request.url.path)
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return error_response(405, f"Method {request.method} is not allowed on {where}.")
        return error_response(404, f"Unknown request URL: {request.method} {where}.", code="unknown_url")

    feed = ([Route("/feed/{name}", FeedFolder(config.feed_dir).handler, methods=["GET", "HEAD"])]
            if config.feed_dir else [])
    api = [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/models", chat.models, methods=["GET"]),
        Route("/v1/models/{model:path}", chat.models, methods=["GET"]),
        Route("/v1/audio/speech", chat.speech.handle, methods=["POST"]),
        Route("/v1/files", chat.files.create, methods=["POST"]),
        Route("/v1/files", chat.files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", chat.files.retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", chat.files.delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", chat.files.content, methods=["GET"]),
        Route("/v1/batches", chat.batches.create, methods=["POST"]),
        Route("/v1/batches", chat.batches.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", chat.batches.retrieve, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", chat.batches.cancel, methods=["POST"]),
        Route("/stats", chat.stats_endpoint, methods=["GET"]),
        Route("/stats/reset", chat.stats_reset, methods=["POST"]),
        Route("/faults", chat.set_faults, methods=["POST"]),
    ]
    app = Starlette(
        routes=feed if config.feed_only else [*api, *feed],
        middleware=[Middleware(RequestGuard, limits=config.limits, hosts=config.allowed_hosts,
                               multipart_paths=("/v1/files",), keyed=config.api_key is not None)],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    app.state.chat = chat
    return app


def parse_shutdowns(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`--shutdown MODEL=DATE` (repeatable): a model of MODELS and an ISO date; ValueError otherwise."""
    from datetime import date

    parsed: list[tuple[str, str]] = []
    for value in values:
        model, sep, day = value.partition("=")
        if not sep or model not in MODELS:
            raise ValueError(f"{value!r} is not MODEL=DATE with a model this server offers ({', '.join(MODELS)})")
        try:
            parsed.append((model, date.fromisoformat(day.strip()).isoformat()))
        except ValueError:
            raise ValueError(f"{day!r} is not a date (YYYY-MM-DD)") from None
    return tuple(parsed)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(config: ServerConfig) -> None:
    import uvicorn

    limits = config.limits
    # The protocol is uvicorn's own (h11 or httptools), plus the connection in the scope for socket-level faults,
    # plus server_guard's header deadline, lingering close and OpenAI-shaped answer to the connection limit.
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning", access_log=False,
                http=guarded_protocol(ConnectionExposingProtocol, limits),
                limit_concurrency=connection_limit(limits), timeout_keep_alive=limits.keep_alive_s,
                h11_max_incomplete_event_size=HEADER_BYTES, ws="none")  # no WebSocket, even if a library is there
