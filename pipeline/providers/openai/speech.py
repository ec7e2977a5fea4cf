"""The speech endpoint's wire format (`POST /audio/speech`, CreateSpeechRequest): the request body, the parts a long
text is spoken in, and the answer's audio checked and wrapped as a WAV.

Two-step's second step: the text a text model wrote is spoken verbatim. Knows bodies and bytes, not HTTP.
"""

from __future__ import annotations

from typing import Any

import httpx

from pipeline.audio import pcm16_to_wav, plausible, sniff_container, wav_info
from pipeline.errors import InvalidAudio, TransientError
from pipeline.models import CUSTOM_VOICE_PREFIX, RunSettings
from pipeline.plan.split import CHARS_PER_TOKEN, split_for_budget
from pipeline.redact import from_server

SPEECH_PATH = "audio/speech"
MAX_INPUT_CHARS = 4096  # CreateSpeechRequest.input's maxLength
PCM_SAMPLE_RATE = 24_000  # response_format "pcm": 24 kHz, 16-bit signed little-endian, mono (no header)
# The --format values the API can answer in directly (chat audio.format and the speech endpoint's response_format),
# saved as they come when no loudness change is asked, and what their bytes look like (audio.sniff_container).
DIRECT_FORMATS = ("mp3", "opus", "flac")
DIRECT_CONTAINERS = {"mp3": "mp3", "opus": "ogg", "flac": "flac"}


def speech_parts(text: str) -> list[str]:
    """The text in as few parts as fit the endpoint's input limit, split at headings, paragraphs, then sentence ends
    (mid-sentence only for a sentence longer than the limit)."""
    parts = split_for_budget(text, int(MAX_INPUT_CHARS // CHARS_PER_TOKEN))
    assert all(len(part) <= MAX_INPUT_CHARS for part in parts), "split_for_budget keeps parts within the limit"
    return parts


def speech_body(text: str, voice: str, settings: RunSettings, response_format: str = "pcm") -> dict[str, Any]:
    """One CreateSpeechRequest: the text verbatim, the voice (a custom voice as {"id": ...}), and how to speak."""
    body: dict[str, Any] = {"model": settings.tts_model, "input": text,
                            "voice": {"id": voice} if voice.startswith(CUSTOM_VOICE_PREFIX) else voice,
                            "response_format": response_format}
    if settings.voice_instructions:
        body["instructions"] = settings.voice_instructions
    return body


def parse_speech(response: httpx.Response, text: str, *, secret: str | None = None) -> tuple[bytes, str | None]:
    """(a WAV, the request id) from a 2xx answer to a `pcm` request speaking `text`; a broken answer (one that is
    not audio, or cannot be `text` spoken: plausible.implausible) is a TransientError (retried).

    The answer is raw samples. A server that sends a WAV anyway (some compatible servers ignore `pcm`) is accepted
    when it parses: the frames are what count."""
    request_id = from_server(response.headers.get("x-request-id"), secret)

    def broken(reason: str) -> TransientError:
        return TransientError(f"broken answer: {reason}", status=response.status_code, request_id=request_id,
                              cause="broken_answer")

    data = response.content
    if data[:4] == b"RIFF":
        try:
            info = wav_info(data)
        except InvalidAudio as exc:
            raise broken(str(exc)) from exc
        if why := plausible.implausible(info.duration_s, info.sample_rate, text):
            raise broken(why)
        return data, request_id
    if response.headers.get("content-type", "").split(";")[0].strip() == "application/json" or not data:
        raise broken("the speech endpoint sent no audio")
    if len(data) % 2:
        raise broken("pcm audio of an odd number of bytes (cut short?)")
    if why := plausible.implausible(len(data) / 2 / PCM_SAMPLE_RATE, PCM_SAMPLE_RATE, text):
        raise broken(why)
    return pcm16_to_wav(data, PCM_SAMPLE_RATE), request_id


def parse_encoded_speech(response: httpx.Response, audio_format: str, text: str, *,
                         secret: str | None = None) -> tuple[bytes, str | None]:
    """(the audio as sent, the request id) from a 2xx answer in a direct format: it must look like that format, and
    the length its headers declare (if any) must fit `text`."""
    request_id = from_server(response.headers.get("x-request-id"), secret)
    container = DIRECT_CONTAINERS[audio_format]
    why = None
    if sniff_container(response.content[:4096]) != container:
        why = f"the speech endpoint's audio is not the {audio_format} asked for"
    elif (declared := plausible.declared_duration(response.content, container)) is not None:
        why = plausible.implausible(declared, None, text)
    if why:
        raise TransientError(f"broken answer: {why}", status=response.status_code, request_id=request_id,
                             cause="broken_answer")
    return response.content, request_id
