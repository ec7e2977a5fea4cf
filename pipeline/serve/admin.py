"""`audiosum serve`'s own routes for tests and benchmarks: GET /stats (what was answered), POST /stats/reset, and
POST /faults (replace the injected faults while serving).

Reads and resets the counters the endpoints keep, and swaps the fault plan; behind the key, never counted itself,
and it answers no API request.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve.chat import ChatServer, fresh_counts
from pipeline.serve.chat_request import is_int, parse_body
from pipeline.serve.errors import ApiFailure, json_response
from pipeline.serve.faults import FaultPlan, parse_faults


class AdminEndpoints:
    """The routes, over the server object whose counters and fault plan they read and replace."""

    def __init__(self, chat: ChatServer) -> None:
        self.chat = chat

    async def stats(self, request: Request) -> Response:
        """The counters (behind the key when there is one: they reveal what clients sent). Not counted themselves."""
        chat = self.chat
        try:
            chat.check_auth(request)
        except ApiFailure as failure:
            return failure.response()
        pool = chat.pool
        jobs = {} if pool is None else {"pool": {"jobs": pool.admitted, "capacity": pool.capacity,
                                                 "dropped": pool.dropped}}
        return json_response({"engine": chat.config.engine, "counts": dict(chat.stats), "wire": dict(chat.wire),
                              "models": dict(chat.models.stats), **self.endpoint_stats(),
                              "held": chat.held.value, "log": list(chat.log), **jobs})

    def endpoint_stats(self) -> dict[str, Any]:
        chat = self.chat
        return {"speech": dict(chat.speech.stats), "files": {**chat.files.stats, **chat.files.store.counts()},
                "batches": dict(chat.batches.stats)}

    async def stats_reset(self, request: Request) -> Response:
        """Zero the counters; answers with the counts as they were, so reading and zeroing is one step."""
        chat = self.chat
        try:
            chat.check_auth(request)
        except ApiFailure as failure:
            return failure.response()
        counts, chat.stats = dict(chat.stats), fresh_counts()
        wire, chat.wire = dict(chat.wire), Counter()
        chat.models.stats = Counter()
        for endpoint_counts in (chat.speech.stats, chat.files.stats, chat.batches.stats):
            endpoint_counts.clear()
            endpoint_counts.update({"requests": 0, "ok": 0})
        chat.log.clear()
        return json_response({"engine": chat.config.engine, "counts": counts, "wire": wire})

    async def set_faults(self, request: Request) -> Response:
        """Replace the injected faults while serving: {"faults": "404=1", "seed": 0} as --faults/--seed take them,
        so one server can play every fault in turn. Answers with the faults as they were; not counted."""
        chat = self.chat
        try:
            chat.check_auth(request)
            body = parse_body(await request.body())
            seed = body.get("seed", 0)
            if not is_int(seed):
                raise ApiFailure(400, "'seed' must be an integer.", param="seed", code="invalid_type")
            try:
                faults = parse_faults(body.get("faults") if isinstance(body.get("faults"), str) else None)
            except ValueError as exc:
                raise ApiFailure(400, f"Invalid value for 'faults': {exc}", param="faults",
                                 code="invalid_value") from exc
        except ApiFailure as failure:
            return failure.response()
        before, chat.faults = chat.faults, FaultPlan(faults, seed)
        chat.jitter = random.Random(f"audiosum-jitter-{seed}")  # as a server started with this seed
        return json_response({"faults": dict(before.faults)})
