"""The body of a chat.completion answer: its usage (this server's token accounting), the cut at a token cap, and the
JSON bytes with the answer's audio base64-encoded into them in pieces.

Builds bodies only: it checks no request and runs no engine (encoded_answer is CPU work, for a thread, not the loop).
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from typing import Any

from pipeline.serve.chat_request import B64_CHUNK, Turn

# This server's own accounting convention for audio tokens (the real service does not publish a rate).
AUDIO_OUT_TOKENS_PER_SECOND = 20  # as the real audio models bill a spoken second (a heard one: 10, see prompt_tokens)
# Stands for the answer's base64 audio while the rest of it is dumped: unguessable, so no client string contains it.
AUDIO_PLACEHOLDER = "audio-" + secrets.token_hex(16)


def encoded_answer(answer: dict[str, Any], audio: tuple[bytes, str] | None) -> bytes:
    """The answer as JSON bytes, with the audio base64-encoded into it in pieces (json.dumps of a 50 MB string
    holds the GIL for half a second). Runs in a thread."""
    text = json.dumps(answer, separators=(",", ":")).encode("ascii")
    if audio is None:
        return text
    wav, audio_format = audio
    data = memoryview(pcm_frames(wav) if audio_format == "pcm16" else wav)  # wav, or already encoded
    head, tail = text.split(f'"{AUDIO_PLACEHOLDER}"'.encode("ascii"), 1)
    pieces = (base64.b64encode(data[i:i + B64_CHUNK]) for i in range(0, len(data), B64_CHUNK))
    return b"".join([head, b'"', *pieces, b'"', tail])


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def prompt_tokens(turns: list[Turn]) -> tuple[int, int]:
    """(text, audio) prompt tokens: about 4 characters a token plus 4 a message, and 1 per 3200 audio bytes."""
    text = sum(estimate_tokens(t.text) + 4 for t in turns)
    audio = sum(math.ceil(len(d) / 3200) for t in turns for d, _ in t.audio_parts)
    return text, audio


def chat_completion(model: str, message: dict[str, Any], prompt: tuple[int, int], completion: tuple[int, int],
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


def cap_text_answer(answer: dict[str, Any], max_tokens: int) -> None:
    """Cut a text answer at max_completion_tokens, as the real service does (finish_reason "length")."""
    choice = answer["choices"][0]
    content = choice["message"].get("content") or ""
    if estimate_tokens(content) <= max_tokens:
        return
    choice["message"]["content"] = content[: max_tokens * 4].rsplit(" ", 1)[0]
    choice["finish_reason"] = "length"
    usage = answer["usage"]
    usage["total_tokens"] -= usage["completion_tokens"] - max_tokens
    usage["completion_tokens"] = usage["completion_tokens_details"]["text_tokens"] = max_tokens


def pcm_frames(wav: bytes) -> bytes:
    import io
    import wave

    with wave.open(io.BytesIO(wav), "rb") as reader:
        return reader.readframes(reader.getnframes())
