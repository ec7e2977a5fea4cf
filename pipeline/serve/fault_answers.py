"""What a request gets instead of its real answer: the rate limiter's 429 and each injected fault's answer (an
HTTP error in OpenAI's words, or a 200 whose body or audio is broken), for every endpoint that draws faults.

Words and builds those answers only; it never decides whether a request is limited or faulted (limits.py,
faults.py draw that) and never touches the connection (faults.py's socket-level faults do).
"""

from __future__ import annotations

import base64
import functools
import json
import random
from collections.abc import Callable

from starlette.responses import Response

from pipeline.serve import client_json
from pipeline.serve.completion import chat_completion
from pipeline.serve.errors import MAX_QUOTED, STATUS_ERRORS, ApiFailure, request_id
from pipeline.serve.faults import STATUS_FAULTS, TruncatedResponse
from pipeline.serve.limits import Admission, format_duration, retry_after_headers
from pipeline.serve.models import MODELS

ORGANIZATION = "org-audiosum"
RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"


def model_of(raw: bytes) -> str:
    """The model a body names, read leniently (a faulted request is never checked), or the first of MODELS."""
    try:
        body = client_json.loads(raw)
    except client_json.RefusedJson:
        return MODELS[0]
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else MODELS[0]


def rate_limited(admission: Admission, model: str) -> ApiFailure:
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


def fault_failure(fault: str, wait_s: float, model: str) -> ApiFailure:
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


def broken_success(fault: str, model: str, jitter: random.Random, remember: Callable[[str], tuple[str, int]],
                   engine: str) -> Response:
    """The 200 a `badjson`, `badaudio` or `truncated` fault answers with: a chat.completion whose body or audio is
    unusable; `remember` gives the audio id, `jitter` picks which kind of bad audio."""
    headers = {"x-request-id": request_id()}
    spoken = ["Here is a short spoken summary of the document."]
    if fault == "badaudio":
        # Vary between the two ways audio can be unusable: not base64 at all, and base64 of bytes that are
        # not a WAV (an MP3-looking header followed by noise).
        data = ("UklGR%not-base64!" if jitter.random() < 0.5
                else base64.b64encode(b"ID3\x04\x00\x00" + jitter.randbytes(2048)).decode("ascii"))
    else:
        data = _placeholder_wav_base64(spoken[0])
    audio_id, expires_at = remember(spoken[0])
    message = {"role": "assistant", "content": None, "refusal": None,
               "audio": {"id": audio_id, "expires_at": expires_at, "data": data, "transcript": spoken[0]}}
    body = json.dumps(chat_completion(model, message, (20, 0), (12, 30), engine)).encode()
    if fault == "badjson":
        # A 200 whose body stops halfway (with a correct Content-Length): a proxy cut it, not the connection.
        return Response(body[: len(body) // 2], media_type="application/json", headers=headers)
    if fault == "truncated":
        return TruncatedResponse(body, media_type="application/json", headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@functools.cache
def _placeholder_wav_base64(sentence: str) -> str:
    """The broken-answer faults' audio: one fixed sentence of tone, made once (the engine loads only if needed)."""
    from pipeline.engine import tone

    return base64.b64encode(tone.tone([sentence]).wav).decode("ascii")
