"""`GET /v1/models` and `GET /v1/models/{id}` for `audiosum serve`: the models this server answers for, each with the
shutdown_date announced by `--shutdown`, and the check of that option.

Lists and describes models only; it answers no chat or speech request, and its counts (/stats `models`) are its own,
so a run's model check does not change what /stats counts as its requests.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve.core import ServerCore
from pipeline.serve.errors import ApiFailure, json_response, quoted, request_id
from pipeline.serve.record import RequestRecorder
from pipeline.serve.speech import SPEECH_MODELS

# The models this server answers for (GET /v1/models, /v1/models/{id}); its own list, not the client's default.
MODELS = ("gpt-audio-1.5", "gpt-audio", "gpt-audio-mini", "gpt-4o-audio-preview", "gpt-4o-mini-audio-preview",
          "gpt-4o-mini", "gpt-4.1-mini", *SPEECH_MODELS)
MODELS_CREATED = 1_700_000_000


class ModelsEndpoint:
    """The routes; `shutdowns` are (model, YYYY-MM-DD) pairs (ServerConfig.shutdowns), `recorder` --record's file."""

    def __init__(self, core: ServerCore, shutdowns: tuple[tuple[str, str], ...],
                 recorder: RequestRecorder | None) -> None:
        self.core = core
        self.shutdowns = shutdowns
        self.recorder = recorder
        self.stats: Counter[str] = Counter()  # requests, ok, error_<status>

    def model_object(self, model: str) -> dict[str, Any]:
        """The Model object: shutdown_date only when one was announced (--shutdown)."""
        found: dict[str, Any] = {"id": model, "object": "model", "created": MODELS_CREATED, "owned_by": "audiosum"}
        shutdown = dict(self.shutdowns).get(model)
        if shutdown is not None:
            found["shutdown_date"] = shutdown
        return found

    async def handle(self, request: Request) -> Response:
        """GET /v1/models, and GET /v1/models/{model} (404 in OpenAI's shape for a model this server lacks).

        Counted apart from the chat requests (/stats `models`: requests, ok, error_<status>), so a run's model
        check does not change what /stats counts as its requests."""
        self.stats["requests"] += 1
        try:
            self.core.check_auth(request)
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
            self.stats[f"error_{failure.status}"] += 1
            return failure.response()
        self.stats["ok"] += 1
        return json_response(body, headers={"x-request-id": request_id()})


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
