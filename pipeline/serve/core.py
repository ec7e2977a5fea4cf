"""What the endpoints beyond chat (speech, files, batches) use of `audiosum serve`'s one server object: auth, the
fault plan, the rate limiter, the request record, the worker pool and the chat answering.

A Protocol only, so those modules depend on this interface and not on chat.py (which imports them); it does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve.errors import ApiFailure
from pipeline.serve.faults import FaultPlan
from pipeline.serve.limits import Admission, ServerRateLimits
from pipeline.serve.work import Engine, WorkerPool


class ServerCore(Protocol):
    pool: WorkerPool | None
    faults: FaultPlan
    limiter: ServerRateLimits
    monotonic: Callable[[], float]

    @property
    def engine(self) -> Engine: ...

    def check_auth(self, request: Request) -> None:
        """ApiFailure 401 unless the request carries the server's key (when it has one)."""

    async def record(self, request: Request, raw: bytes) -> None:
        """Append the request to `--record`'s file, if there is one."""

    async def json_body(self, raw: bytes) -> dict[str, Any]:
        """The body's JSON object (parsed off the loop), or the ApiFailure 400 a bad body gets."""

    async def settle(self, work: Awaitable[tuple[str, Response]]) -> tuple[str, Response]:
        """`work`'s (stats kind, answer), or the kind and OpenAI-shaped answer of whatever it raised."""

    async def answer_fault(self, fault: str, raw: bytes) -> Response:
        """The answer an injected fault gives instead of the real one."""

    async def latency(self) -> None:
        """The configured extra wait before a 200 answer."""

    def rate_limited(self, admission: Admission, model: str) -> ApiFailure:
        """The 429 the limiter's refusal gets."""

    async def answer_text(self, body: dict[str, Any]) -> dict[str, Any]:
        """A text-only chat.completion for a Chat Completions body (batch lines); ApiFailure if it is invalid."""
