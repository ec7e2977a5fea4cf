"""One pooled httpx client to the API: a request sent, its answer read within a deadline and a size cap (or streamed
to a sink), its failures classified as pipeline.errors, its x-ratelimit-* headers fed to the limiter.

Knows HTTP, not what a document needs: no pacing, no retries (provider.py), no body formats (wire.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from pipeline import __version__
from pipeline.clock import Clock
from pipeline.errors import (
    PermanentApiError,
    TransientError,
)
from pipeline.models import (
    RunSettings,
)
from pipeline.providers.openai.ratelimit import RateLimiter
from pipeline.providers.openai.retry import retry_after_seconds
from pipeline.providers.openai.wire import CHAT_PATH, classify_error_response
from pipeline.redact import from_server

Sink = Callable[[bytes], Awaitable[None]]
JSON_HEADERS = {"Content-Type": "application/json"}
CONNECT_TIMEOUT_S = 10.0


class ApiTransport:
    """The API's base URL and key, one connection pool, and a deadline on every whole answer."""

    def __init__(self, settings: RunSettings, transport: httpx.AsyncBaseTransport | None, clock: Clock) -> None:
        headers = {"User-Agent": f"audiosum/{__version__}"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.secret = settings.api_key
        self._clock = clock
        self.deadline_s = settings.timeout_s + CONNECT_TIMEOUT_S
        self.client = httpx.AsyncClient(
            base_url=settings.api_base.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(CONNECT_TIMEOUT_S, settings.timeout_s)),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency),
            transport=transport,
        )

    async def send(self, payload: bytes, path: str = CHAT_PATH, limiter: RateLimiter | None = None,
                   max_bytes: int | None = None) -> httpx.Response:
        """One JSON POST, its failures classified; the answer's x-ratelimit-* headers feed `limiter`."""
        return await self.request("POST", path, content=payload, headers=JSON_HEADERS, limiter=limiter,
                                  max_bytes=max_bytes)

    async def request(self, method: str, path: str, *, limiter: RateLimiter | None = None,
                      max_bytes: int | None = None, sink: Sink | None = None, **options: Any) -> httpx.Response:
        """One request to the API (options as httpx takes them), its failures classified as pipeline.errors.
        max_bytes: the body is read as it arrives and refused (PermanentApiError) once past it. sink: a 2xx body
        goes to it chunk by chunk instead of into the response (never held whole)."""
        try:
            # httpx's timeouts are per read; this bounds the whole answer, so a trickling server cannot hold
            # a slot for ever.
            async with asyncio.timeout(self.deadline_s):
                if max_bytes is None:
                    response = await self.client.request(method, path, **options)
                else:
                    response = await self._capped(method, path, max_bytes, sink, **options)
        # httpx's errors hold the request, its Authorization header (the key) included: they are never chained,
        # so no traceback or logger that walks __cause__ can reach it (from None).
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise TransientError(f"request timed out ({type(exc).__name__})", cause="timeout") from None
        except httpx.LocalProtocolError as exc:
            # Its message can quote the Authorization header; say only what kind of error it was.
            raise PermanentApiError(f"the request could not be sent ({type(exc).__name__})",
                                    cause="local_protocol") from None
        except httpx.TransportError as exc:
            detail = from_server(str(exc), self.secret) or "no detail"
            raise TransientError(f"connection failed ({type(exc).__name__}: {detail})", cause="connection") from None
        except httpx.HTTPError as exc:
            # e.g. a body whose content-encoding does not decode
            raise TransientError(f"broken answer: {type(exc).__name__}", cause="broken_answer") from None
        if limiter is not None:
            limiter.observe(response.headers)
        if response.is_success:
            return response
        hint = retry_after_seconds(response.headers, now_wall=self._clock.wall())
        raise classify_error_response(response, secret=self.secret, retry_after_s=hint)

    async def _capped(self, method: str, path: str, max_bytes: int, sink: Sink | None,
                      **options: Any) -> httpx.Response:
        """The answer, its body read chunk by chunk and never held past max_bytes (a 2xx body given to sink is not
        held at all)."""
        async with self.client.stream(method, path, **options) as streamed:
            body = bytearray()
            read = 0
            streaming = sink is not None and streamed.is_success
            async for chunk in streamed.aiter_bytes():
                read += len(chunk)
                if read > max_bytes:
                    raise PermanentApiError(f"the answer is over {_size(max_bytes)}; not read further",
                                            cause="too_large")
                if streaming:
                    assert sink is not None
                    await sink(chunk)
                else:
                    body += chunk
            kept = [(k, v) for k, v in streamed.headers.items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
            return httpx.Response(streamed.status_code, headers=kept, content=bytes(body), request=streamed.request)

    async def aclose(self) -> None:
        await self.client.aclose()


def _size(count: int) -> str:
    return f"{count / 2**20:g} MB" if count >= 2**20 else f"{count / 1024:g} KB"
