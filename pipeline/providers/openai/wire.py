"""The Chat Completions wire format: request bodies, the error classes a non-2xx answer maps to, and 2xx answers
parsed and checked (audio judged against its transcript) into SpokenSummary or TextAnswer.

Knows bodies and responses, not how they travel (transport.py) or which requests a document takes (provider.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any, TypeVar

import httpx

from pipeline.audio import plausible, sniff_container, wav_info
from pipeline.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidAudio,
    PermanentApiError,
    TransientError,
)
from pipeline.models import (
    CUSTOM_VOICE_PREFIX,
    Document,
    RunSettings,
    SpokenSummary,
    Usage,
)
from pipeline.providers.openai import server_json
from pipeline.providers.openai.prompts import (
    system_prompt,
    user_message,
)
from pipeline.providers.openai.shapes import api_id
from pipeline.providers.openai.speech import (
    DIRECT_CONTAINERS,
    DIRECT_FORMATS,
)
from pipeline.providers.openai.usage import usage_of
from pipeline.redact import from_server, well_formed, without_secrets

RETRYABLE_STATUSES = frozenset({408, 409, 429})  # and every 5xx
CHAT_PATH = "chat/completions"
MAX_MESSAGE_CHARS = 300  # of a server's error message kept in reports


def build_request_body(document: Document, settings: RunSettings) -> dict[str, Any]:
    return output_options(document, settings) | {"messages": [
        {"role": "system", "content": system_prompt(settings.words, document.instructions or settings.instructions)},
        {"role": "user", "content": user_message(document)},
    ]}


def output_options(document: Document, settings: RunSettings, audio_format: str = "wav") -> dict[str, Any]:
    """model, modalities and (for spoken answers) the voice and format: what --output asks for."""
    if settings.output == "text":
        return {"model": settings.model, "modalities": ["text"]}
    return {"model": settings.model, "modalities": ["text", "audio"],
            "audio": {"voice": voice_on_wire(document.voice or settings.voice), "format": audio_format}}


def direct_format(settings: RunSettings) -> str:
    """The format to ask the API for: --format itself when it is mp3, opus or flac and no loudness change is asked
    (saved as it comes: no decode and re-encode), else WAV. Answers that are stitched from parts ask for WAV."""
    if settings.output != "text" and settings.loudness_lufs is None and settings.audio_format in DIRECT_FORMATS:
        return settings.audio_format
    return "wav"


def voice_on_wire(voice: str) -> str | dict[str, str]:
    """A built-in voice goes as its name, a custom voice (voice_...) as {"id": ...} (VoiceIdsOrCustomVoice)."""
    return {"id": voice} if voice.startswith(CUSTOM_VOICE_PREFIX) else voice


def voice_name(wire: object) -> str:
    """The voice as the sidecar names it: a custom voice's id, or the built-in name."""
    return str(wire["id"]) if isinstance(wire, dict) else str(wire)


def classify_error_response(response: httpx.Response, *, secret: str | None = None,
                            retry_after_s: float | None = None) -> ApiError:
    """The error class for a non-2xx answer, read from its status and OpenAI error body.

    Every string taken from the answer passes redact.from_server here, the one boundary: nothing the server says
    (message, code, type, param, request id) reaches state, events, reports or stderr unredacted.
    """
    status = response.status_code
    request_id = from_server(response.headers.get("x-request-id"), secret)
    code: str | None = None
    param: str | None = None
    message = ""
    try:
        error = server_json.parse(response.content).get("error") or {}
        raw_code = error.get("code") or error.get("type")
        code = from_server(raw_code, secret) if isinstance(raw_code, (str, int)) else None
        message = str(error.get("message") or "")
        param = from_server(error["param"], secret) if isinstance(error.get("param"), str) else None
    except (ValueError, AttributeError):
        pass
    message = from_server(message or response.reason_phrase or "no message", secret, limit=MAX_MESSAGE_CHARS) or ""
    text = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
    cause = f"http_{status}" + (f"_{_label(code)}" if status == 429 and code else "")
    kind: type[ApiError] = PermanentApiError
    if status == 401:
        kind = AuthenticationFailed
    elif status in RETRYABLE_STATUSES or status >= 500:
        kind = PermanentApiError if status == 429 and code == "insufficient_quota" else TransientError
    return kind(text, status=status, code=code, request_id=request_id, param=param, cause=cause,
                retry_after_s=retry_after_s if kind is TransientError else None)


def _label(code: str) -> str:
    """A code as part of a cause label (a key in reports and metrics): word characters only, short."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", code)[:60].strip("_") or "unknown"


def parse_answer(response: httpx.Response, *, provider: str, voice: str, secret: str | None = None,
                 audio_format: str = "wav") -> SpokenSummary:
    """A SpokenSummary from a 2xx answer, after checking the audio decodes to a WAV that parses.

    Its strings pass the redaction boundary: the transcript loses any secret, ids and names are also shortened."""
    request_id = from_server(response.headers.get("x-request-id"), secret)

    def broken(reason: str) -> TransientError:
        return TransientError(f"broken answer: {reason}", status=response.status_code, request_id=request_id,
                              cause="broken_answer")

    try:
        body = server_json.parse(response.content)
    except ValueError as exc:
        raise broken(f"body is not JSON ({exc})" if isinstance(exc, server_json.TooDeep) else "body is not JSON") \
            from exc
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise broken("no choices[0].message") from exc
    audio = message.get("audio") if isinstance(message, dict) else None
    if not isinstance(audio, dict) or not audio.get("data"):
        raise broken("message has no audio data")
    try:
        wav = base64.b64decode(audio["data"], validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise broken("audio data is not valid base64") from exc
    transcript = audio.get("transcript") or message.get("content") or ""
    if not isinstance(transcript, str) or not transcript.strip():
        raise broken("answer has no transcript")
    if not well_formed(transcript):
        raise broken("the transcript is not well-formed Unicode (a lone surrogate)")
    if audio_format == "wav":
        try:
            info = wav_info(wav)
        except InvalidAudio as exc:
            raise broken(str(exc)) from exc
        sample_rate, duration_s = info.sample_rate, info.duration_s
        declared: float | None = duration_s
    else:  # format-direct: the runner measures it (one decode, off the loop) when it tags it
        if sniff_container(wav[:4096]) != DIRECT_CONTAINERS[audio_format]:
            raise broken(f"audio is not the {audio_format} asked for")
        sample_rate, duration_s = 0, 0.0
        declared = plausible.declared_duration(wav, DIRECT_CONTAINERS[audio_format])
    # The server's audio is judged against its own words before anything hears or keeps it: hours of audio for a
    # sentence (or a 1 Hz WAV) is a broken answer, retried, never hours of caption hearing.
    if declared is not None and (why := plausible.implausible(declared, sample_rate or None, transcript)):
        raise broken(why)
    return SpokenSummary(
        wav=wav,
        transcript=without_secrets(transcript, secret).strip(),
        sample_rate=sample_rate,
        duration_s=duration_s,
        audio_format=audio_format,
        provider=provider,
        model=from_server(body.get("model") or "", secret) or "",
        voice=voice,
        # A compatible server may send other types; an id that cannot be trusted is simply not referred to later.
        audio_id=audio_id if (audio_id := api_id(audio.get("id"))) and audio_id == from_server(audio_id, secret)
        else None,
        audio_expires_at=audio["expires_at"] if type(audio.get("expires_at")) is int else None,
        request_id=request_id,
        usage=usage_of(body.get("usage")),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TextAnswer:
    """A text-only answer (the map step of long documents)."""

    text: str
    usage: Usage
    request_id: str | None


Answer = TypeVar("Answer", SpokenSummary, TextAnswer)


def parse_text_answer(response: httpx.Response, secret: str | None = None) -> TextAnswer:
    """The text of a 2xx text-only answer (without any secret it echoes)."""
    request_id = from_server(response.headers.get("x-request-id"), secret)
    try:
        body = server_json.parse(response.content)
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise TransientError("broken answer: no choices[0].message.content", status=response.status_code,
                             request_id=request_id, cause="broken_answer") from exc
    if not isinstance(content, str) or not content.strip() or not well_formed(content):
        raise TransientError("broken answer: no text, or text that is not well-formed Unicode",
                             status=response.status_code, request_id=request_id, cause="broken_answer")
    return TextAnswer(without_secrets(content, secret).strip(), usage_of(body.get("usage")), request_id)


def carries_audio(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(part, dict) and part.get("type") == "input_audio"
               for message in messages if isinstance(message.get("content"), list) for part in message["content"])
