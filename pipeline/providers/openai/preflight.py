"""The check a run makes once before its first chat request: does the server offer the model, and is it shutting down.

Reads GET /models/{model} (and GET /models for the ids to suggest); sends no chat request and spends no rate budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from pipeline.errors import UsageError
from pipeline.providers.openai import server_json
from pipeline.redact import from_server

SHUTDOWN_WARNING_DAYS = 30
# Audio-capable ids that do not say "audio" in their name (the realtime models speak, but not over Chat
# Completions, so they are not offered here); any id containing "audio" counts as well.
AUDIO_MODEL_IDS: frozenset[str] = frozenset()
MAX_SUGGESTED = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Preflight:
    """What the check found: a shutdown date to warn about, or a note that the server has no models endpoint."""

    model: str
    shutdown_date: str | None = None  # announced and within SHUTDOWN_WARNING_DAYS (or past)
    days_left: int | None = None
    note: str | None = None  # why the check was skipped (no models endpoint), for a debug event


def is_audio_model(model_id: str) -> bool:
    return "audio" in model_id or model_id in AUDIO_MODEL_IDS


# What each model option is for: its flag, and which of a server's models to suggest when it lacks the one asked.
ROLES: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "chat-audio": ("--model", "audio-capable", lambda m: is_audio_model(m)),
    "text": ("--text-model", "text", lambda m: not is_audio_model(m) and not is_speech_model(m)),
    "speech": ("--tts-model", "speech", lambda m: is_speech_model(m)),
}


def is_speech_model(model_id: str) -> bool:
    return "tts" in model_id


async def check_model(client: httpx.AsyncClient, model: str, *, now_wall: float, deadline_s: float,
                      secret: str | None, refused: Any, role: str = "chat-audio") -> Preflight:
    """GET models/{model}: 404 (with a model list that lacks it) is a UsageError; 401 goes to `refused(response)`
    (the caller's usual error classification, which raises). A server without the endpoint is not an error."""
    response = await _get(client, f"models/{quote(model, safe='')}", deadline_s)
    if response is None:
        return Preflight(model, note="models endpoint unreachable; not checked")
    if response.status_code == 401:
        refused(response)
    if response.status_code == 404:
        offered = await _offered(client, deadline_s, secret)
        if offered is None:
            return Preflight(model, note="the server has no models endpoint; not checked")
        if model in offered:
            return Preflight(model, note="GET models/{id} is missing but the list names the model")
        flag, kind, suits = ROLES[role]
        fitting = sorted(m for m in offered if suits(m))
        shown = ", ".join(fitting[:MAX_SUGGESTED]) + (", ..." if len(fitting) > MAX_SUGGESTED else "")
        raise UsageError(f"the server does not offer model {from_server(model, secret)!r} (GET /models/{{id}} "
                         f"answered 404); {kind} models it offers: {shown or 'none'} (choose one with {flag})")
    body = _json(response)
    if not response.is_success or not isinstance(body, dict):
        return Preflight(model, note=f"GET models/{{id}} answered HTTP {response.status_code} without a model; "
                                     "not checked")
    raw = body.get("shutdown_date")
    if not isinstance(raw, str):
        return Preflight(model)
    try:
        shutdown = date.fromisoformat(raw[:10])
    except ValueError:
        return Preflight(model, note="shutdown_date is not a date; ignored")
    days_left = (shutdown - datetime.fromtimestamp(now_wall, UTC).date()).days
    if days_left > SHUTDOWN_WARNING_DAYS:
        return Preflight(model)
    return Preflight(model, shutdown_date=shutdown.isoformat(), days_left=days_left)


def shutdown_message(found: Preflight) -> str:
    days = found.days_left if found.days_left is not None else 0
    when = f"in {days} day(s)" if days >= 0 else f"{-days} day(s) ago"
    return (f"model {found.model} shuts down on {found.shutdown_date} ({when}); choose another --model before "
            "then")


async def _offered(client: httpx.AsyncClient, deadline_s: float, secret: str | None) -> set[str] | None:
    """The ids GET models lists, or None when the server has no (usable) models endpoint."""
    response = await _get(client, "models", deadline_s)
    if response is None or not response.is_success:
        return None
    body = _json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return {shown for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
            if (shown := from_server(item["id"], secret))}


MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a Model or a list of models: tens of KB; more is refused unread


async def _get(client: httpx.AsyncClient, path: str, deadline_s: float) -> httpx.Response | None:
    """The answer to GET path, read within the deadline and MAX_ANSWER_BYTES (None: no usable answer)."""
    try:
        async with asyncio.timeout(deadline_s), client.stream("GET", path,
                                                              headers={"Accept-Encoding": "identity"}) as streamed:
            body = bytearray()
            async for chunk in streamed.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return None  # not a model list: the model is simply not checked, as for no answer
            kept = [(k, v) for k, v in streamed.headers.items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
            return httpx.Response(streamed.status_code, headers=kept, content=bytes(body), request=streamed.request)
    # Like send(): httpx's errors hold the request and its Authorization header, so none is kept or chained.
    except (httpx.HTTPError, TimeoutError):
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return server_json.parse(response.content)
    except ValueError:  # not JSON, not UTF-8 (UnicodeDecodeError is a ValueError), or nested too deep
        return None
