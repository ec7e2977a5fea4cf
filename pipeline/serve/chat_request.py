"""A chat completions request checked against the API's shapes: the JSON body, the messages as turns (text and
input audio), the output asked for (modalities, voice, format) and the options this server refuses.

Checks and reads only, like the real service (every malformed field is a 400 naming its param, never a 500); it
answers nothing, counts nothing and never touches the worker pool.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.serve import client_json
from pipeline.serve.errors import ApiFailure, quoted

KNOWN_FORMATS = frozenset({"wav", "pcm16", "mp3", "flac", "opus", "aac"})
INPUT_AUDIO_FORMATS = frozenset({"wav", "mp3"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
CUSTOM_VOICE_PREFIX = "voice_"  # a custom voice reference {"id": "voice_..."} is answered as if a known voice
# Bounds on the shape of one request, so that validating it stays cheap on the event loop.
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 4096                  # across all messages
# A request's text (all its messages together, UTF-8): the page cap of the client's fetcher, declared here rather
# than imported, as the voice list is.
MAX_TEXT_BYTES = 5 * 1024 * 1024
B64_CHUNK = 3 * 256 * 1024                # base64 is encoded and decoded in pieces, so a thread lets go of the GIL

# The voices the real API takes for chat audio, as its reference lists them; declared here, not borrowed from the
# client, so a wrong assumption in the client cannot pass its own peer.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin",
          "cedar")


@dataclass(slots=True)
class Turn:
    role: str
    text: str
    audio_parts: list[tuple[bytes, str]]


def parse_body(raw: bytes) -> dict[str, Any]:
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


def parse_turns(messages: Any, remembered: Callable[[str], str | None]) -> list[Turn]:
    """The request's messages as turns; `remembered` gives an earlier answer's transcript by its audio id (None once
    forgotten). Only reads: runs in a thread, as it may check 5 MB of text and decode 25 MB of base64 audio."""
    if not isinstance(messages, list) or not messages:
        raise ApiFailure(400, "'messages' must be a non-empty array.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise ApiFailure(400, f"'messages' has {len(messages)} items; at most {MAX_MESSAGES} are accepted.",
                         param="messages", code="array_above_max_length")
    turns: list[Turn] = []
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
            turns.append(_remembered_turn(audio_ref, where, remembered))
            continue
        content = message.get("content")
        parts += len(content) if isinstance(content, list) else 0
        if parts > MAX_CONTENT_PARTS:
            raise ApiFailure(400, f"The messages have more than {MAX_CONTENT_PARTS} content parts.",
                             param=f"{where}.content", code="array_above_max_length")
        turn = _content_turn(role, content, where)
        text_bytes += len(turn.text.encode("utf-8"))
        if text_bytes > MAX_TEXT_BYTES:
            raise _text_too_long(f"{where}.content")
        turns.append(turn)
    return turns

def _remembered_turn(audio_ref: Any, where: str, remembered: Callable[[str], str | None]) -> Turn:
    """An earlier answer given back by its audio id: its transcript, while it is remembered."""
    audio_id = audio_ref.get("id") if isinstance(audio_ref, dict) else None
    if not isinstance(audio_id, str):
        raise ApiFailure(400, f"'{where}.audio' must be an object with an 'id'.", param=f"{where}.audio",
                         code="invalid_type")
    transcript = remembered(audio_id)
    if transcript is None:
        raise ApiFailure(400, f"Audio with id {quoted(audio_id)} was not found or has expired.",
                         param=f"{where}.audio.id", code="invalid_value")
    return Turn("assistant", transcript, [])

def _content_turn(role: str, content: Any, where: str) -> Turn:
    if isinstance(content, str):
        return Turn(role, checked_text(content, f"{where}.content"), [])
    if content is None and role == "assistant":
        return Turn(role, "", [])
    if not isinstance(content, list):
        raise ApiFailure(400, f"'{where}.content' must be a string or an array of content parts.",
                         param=f"{where}.content", code="invalid_type")
    texts: list[str] = []
    audio: list[tuple[bytes, str]] = []
    for part_index, part in enumerate(content):
        param = f"{where}.content[{part_index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(checked_text(part["text"], f"{param}.text"))
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audio.append(_input_audio(part["input_audio"], param))
        else:
            raise ApiFailure(400, f"Invalid content part at '{param}'.", param=param, code="invalid_value")
    return Turn(role, "\n\n".join(texts), audio)

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
        if not is_int(choices):
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
        if not is_int(cap) or not isinstance(cap, int):
            raise ApiFailure(400, f"Invalid type for '{name}': expected an integer, got {quoted(cap)}.",
                             param=name, code="invalid_type")
        if cap <= 0:
            raise ApiFailure(400, f"Invalid value for '{name}': {cap}; a token cap must be positive.",
                             param=name, code="unsupported_value")
    return next(iter(caps.values()), None)


def checked_text(value: str, param: str) -> str:
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
    step = B64_CHUNK // 3 * 4
    if len(encoded) <= step:
        return base64.b64decode(encoded, validate=True)
    return b"".join(base64.b64decode(encoded[i:i + step], validate=True) for i in range(0, len(encoded), step))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
