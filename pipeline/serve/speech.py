"""`POST /v1/audio/speech` for `audiosum serve`: OpenAI's CreateSpeechRequest checked like the real service, `input`
spoken verbatim by the configured engine and encoded as asked, all of it in the worker pool.

Validates and answers speech requests only; chat, files and batches are elsewhere. Counts its own answers
(`/stats` "speech": requests, ok, error_<status>, fault_<kind>, ...), so the chat counters keep their meaning.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve import work as server_work
from pipeline.serve.core import ServerCore
from pipeline.serve.encode import CONTENT_TYPES, SpeechFormat
from pipeline.serve.errors import ApiFailure, quoted, request_id

SPEECH_MODELS = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd")
MAX_INPUT_CHARS = 4096
SPEED_RANGE = (0.25, 4.0)
DEFAULT_FORMAT: SpeechFormat = "mp3"
_KNOWN_KEYS = frozenset({"model", "input", "voice", "instructions", "response_format", "speed", "stream_format"})


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    text: str
    voice: str
    response_format: SpeechFormat
    speed: float


def fresh_counts() -> Counter[str]:
    return Counter({"requests": 0, "ok": 0})


class SpeechEndpoint:
    """The route; `voices` are the built-in voice names (chat_request.VOICES), `custom_prefix` a custom voice id's
    start."""

    def __init__(self, core: ServerCore, voices: tuple[str, ...], custom_prefix: str) -> None:
        self.core = core
        self.voices = voices
        self.custom_prefix = custom_prefix
        self.stats = fresh_counts()

    async def handle(self, request: Request) -> Response:
        self.stats["requests"] += 1
        kind, response = await self.core.settle(self._speak(request))
        self.stats[kind] += 1
        if self.core.limiter.enabled:
            response.headers.update(self.core.limiter.headers())
        return response

    async def _speak(self, request: Request) -> tuple[str, Response]:
        core = self.core
        core.check_auth(request)
        fault = core.faults.draw()  # drawn first, as for chat: a faulted request costs no rate-limit budget
        raw = await request.body()
        await core.record(request, raw)
        if fault is not None:
            return f"fault_{fault}", await core.answer_fault(fault, raw)
        asked = self.parse(await core.json_body(raw))
        if core.limiter.enabled:
            admission = core.limiter.admit(math.ceil(len(asked.text) / 4))
            if not admission.admitted:
                raise core.rate_limited(admission, asked.model)
        pool = core.pool
        assert pool is not None, "the pool is made when the app starts"
        audio = await pool.run(server_work.speak_text, asked.text, core.engine, asked.response_format, asked.speed)
        await core.latency()
        return "ok", Response(audio, media_type=CONTENT_TYPES[asked.response_format],
                              headers={"x-request-id": request_id()})

    def parse(self, body: dict[str, Any]) -> SpeechRequest:
        unknown = sorted(set(body) - _KNOWN_KEYS)
        if unknown:
            raise ApiFailure(400, f"Unrecognized request argument supplied: {quoted(unknown[0])}.", param=unknown[0],
                             code="unknown_parameter")
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise ApiFailure(400, "'instructions' must be a string.", param="instructions", code="invalid_type")
        if body.get("stream_format", "audio") != "audio":
            raise ApiFailure(400, "This server does not stream speech: 'stream_format' must be 'audio'.",
                             param="stream_format", code="unsupported_value")
        # The offline voice cannot follow `instructions`; they are accepted (as for tts-1) and not acted on.
        return SpeechRequest(self._model(body.get("model")), _input(body.get("input")), self._voice(body.get("voice")),
                             _format(body.get("response_format", DEFAULT_FORMAT)), _speed(body.get("speed", 1.0)))

    @staticmethod
    def _model(model: Any) -> str:
        if not isinstance(model, str) or not model:
            raise ApiFailure(400, "You must provide a model parameter.", param="model")
        if model not in SPEECH_MODELS:
            raise ApiFailure(400, f"Invalid value for 'model': {quoted(model)}; this server speaks with "
                             + ", ".join(repr(m) for m in SPEECH_MODELS) + ".", param="model", code="invalid_value")
        return model

    def _voice(self, voice: Any) -> str:
        if isinstance(voice, dict) and set(voice) == {"id"} and isinstance(voice["id"], str) \
                and voice["id"].startswith(self.custom_prefix) and len(voice["id"]) > len(self.custom_prefix):
            return self.voices[0]  # a custom voice: this server has none of its own, so a built-in one speaks
        if not isinstance(voice, str) or voice not in self.voices:
            raise ApiFailure(400, f"Invalid value for 'voice': {quoted(voice)}. Supported values are: "
                             + ", ".join(repr(v) for v in self.voices) + ".", param="voice", code="invalid_value")
        return voice


def _input(text: Any) -> str:
    if not isinstance(text, str):
        raise ApiFailure(400, "'input' is required and must be a string.", param="input", code="invalid_type")
    if len(text) > MAX_INPUT_CHARS:
        raise ApiFailure(400, f"Invalid 'input': string too long. Expected a string with maximum length "
                         f"{MAX_INPUT_CHARS}, but got a string with length {len(text)} instead.", param="input",
                         code="string_above_max_length")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiFailure(400, "'input' is not valid Unicode (it contains a lone surrogate).", param="input",
                         code="invalid_value") from exc
    if not text.strip():
        raise ApiFailure(400, "'input' is empty: there is nothing to speak.", param="input", code="invalid_value")
    return text


def _format(value: Any) -> SpeechFormat:
    if not isinstance(value, str) or value not in CONTENT_TYPES:
        raise ApiFailure(400, f"Invalid value for 'response_format': {quoted(value)}. Supported values are: "
                         + ", ".join(repr(f) for f in CONTENT_TYPES) + ".", param="response_format",
                         code="invalid_value")
    return cast(SpeechFormat, value)


def _speed(value: Any) -> float:
    low, high = SPEED_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiFailure(400, f"Invalid type for 'speed': expected a number, got {quoted(value)}.", param="speed",
                         code="invalid_type")
    if not low <= value <= high:
        raise ApiFailure(400, f"Invalid value for 'speed': {value}; it must be between {low} and {high}.",
                         param="speed", code="invalid_value")
    return float(value)
