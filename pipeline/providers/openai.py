"""The OpenAI Chat Completions audio interface over httpx: request body, answer parsing, error classes.

Knows the wire format and nothing about files; every failure leaves here as a pipeline.errors class.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx

from pipeline import __version__
from pipeline.audio import InvalidAudio, wav_info
from pipeline.errors import ApiError, AuthenticationFailed, PermanentApiError, TransientError
from pipeline.models import Document, RunSettings, SpokenSummary, Usage
from pipeline.prompts import system_prompt, user_message

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 10.0


def build_request_body(document: Document, settings: RunSettings) -> dict[str, Any]:
    return {
        "model": settings.model,
        "modalities": ["text", "audio"],
        "audio": {"voice": document.voice or settings.voice, "format": "wav"},
        "messages": [
            {"role": "system", "content": system_prompt(settings.words, document.instructions or settings.instructions)},
            {"role": "user", "content": user_message(document)},
        ],
    }


def classify_error_response(response: httpx.Response, *, secret: str | None = None) -> ApiError:
    """The error class for a non-2xx answer, read from its status and OpenAI error body."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    code: str | None = None
    message = ""
    try:
        error = response.json().get("error") or {}
        code = error.get("code") or error.get("type")
        message = str(error.get("message") or "")
    except (ValueError, AttributeError):
        pass
    message = _redact(message or response.reason_phrase or "no message", secret)
    text = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
    if status == 401:
        return AuthenticationFailed(text, status=status, code=code, request_id=request_id)
    if status == 429 and code == "insufficient_quota":
        return PermanentApiError(text, status=status, code=code, request_id=request_id)
    if status in RETRYABLE_STATUSES:
        return TransientError(text, status=status, code=code, request_id=request_id)
    if 500 <= status < 600:
        return TransientError(text, status=status, code=code, request_id=request_id)
    return PermanentApiError(text, status=status, code=code, request_id=request_id)


def parse_answer(response: httpx.Response, *, provider: str, voice: str) -> SpokenSummary:
    """A SpokenSummary from a 2xx answer, after checking the audio decodes to a WAV that parses."""
    request_id = response.headers.get("x-request-id")

    def broken(reason: str) -> TransientError:
        return TransientError(f"broken answer: {reason}", status=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        raise broken("body is not JSON") from None
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise broken("no choices[0].message") from None
    audio = message.get("audio") if isinstance(message, dict) else None
    if not isinstance(audio, dict) or not audio.get("data"):
        raise broken("message has no audio data")
    try:
        wav = base64.b64decode(audio["data"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise broken("audio data is not valid base64") from None
    try:
        info = wav_info(wav)
    except InvalidAudio as exc:
        raise broken(str(exc)) from None
    transcript = audio.get("transcript") or message.get("content") or ""
    if not isinstance(transcript, str) or not transcript.strip():
        raise broken("answer has no transcript")
    return SpokenSummary(
        wav=wav,
        transcript=transcript.strip(),
        sample_rate=info.sample_rate,
        duration_s=info.duration_s,
        provider=provider,
        model=str(body.get("model") or ""),
        voice=voice,
        audio_id=audio.get("id"),
        audio_expires_at=audio.get("expires_at"),
        request_id=request_id,
        usage=_usage(body.get("usage")),
        requests=1,
    )


def _usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def ints(value: object) -> dict[str, int]:
        return {k: int(v) for k, v in value.items() if isinstance(v, int)} if isinstance(value, dict) else {}

    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        total_tokens=int(raw.get("total_tokens") or 0),
        prompt_tokens_details=ints(raw.get("prompt_tokens_details")),
        completion_tokens_details=ints(raw.get("completion_tokens_details")),
    )


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: RunSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"User-Agent": f"audiosum/{__version__}", "Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._secret = settings.api_key
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(CONNECT_TIMEOUT_S, settings.timeout_s)),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency),
            transport=transport,
        )

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        body = build_request_body(document, settings)
        response = await self.send(body)
        return parse_answer(response, provider=self.name, voice=body["audio"]["voice"])

    async def send(self, body: dict[str, Any]) -> httpx.Response:
        """One POST; the seam where rate limiting and retries wrap the request."""
        try:
            response = await self._client.post("chat/completions", content=json.dumps(body).encode("utf-8"))
        except httpx.TimeoutException as exc:
            raise TransientError(f"request timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__}: {_redact(str(exc), self._secret)})") from None
        if response.is_success:
            return response
        raise classify_error_response(response, secret=self._secret)

    async def aclose(self) -> None:
        await self._client.aclose()
