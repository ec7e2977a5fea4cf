"""Injected faults for `audiosum serve --faults`: the seeded draw that picks a fault, and the connection-level ones.

The only server module that touches sockets (reset, truncated, timeout); it does not decide what an OpenAI answer
or error body says — fault_answers.py builds those.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

# An HTTP status alone is its error answer (serve.errors.STATUS_ERRORS); the others are named.
STATUS_FAULTS = ("400", "401", "403", "404", "408", "409", "422", "500", "502", "503", "504")
FAULT_KINDS = ("429", "429-no-retry-after", "quota", *STATUS_FAULTS, "reset", "timeout", "badjson", "badaudio",
               "truncated")
# ASGI scope extension under which ConnectionExposingProtocol puts the request's ConnectionHandle.
CONNECTION_EXTENSION = "audiosum.connection"

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"\A\s*{_NUMBER}\s*(?:-\s*{_NUMBER}\s*)?\Z")


def parse_faults(spec: str | None) -> tuple[tuple[str, float], ...]:
    """`500=0.1,reset=0.05` → (("500", 0.1), ("reset", 0.05)); ValueError for unknown kinds or a total above 1."""
    if spec is None or not spec.strip():
        return ()
    faults: dict[str, float] = {}
    for item in spec.split(","):
        kind, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not kind:
            raise ValueError(f"{item.strip()!r} is not kind=probability")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if kind in faults:
            raise ValueError(f"fault kind {kind!r} is given twice")
        try:
            probability = float(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a probability (in {item.strip()!r})") from exc
        if not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability {value!r} for {kind!r} is not between 0 and 1")
        faults[kind] = probability
    total = sum(faults.values())
    if total > 1.0 + 1e-9:
        raise ValueError(f"the probabilities add up to {total:g}, more than 1")
    return tuple(faults.items())


def parse_seconds_range(text: str) -> tuple[float, float]:
    """`0.1-0.3` → (0.1, 0.3); a single number `0.2` → (0.2, 0.2). ValueError otherwise."""
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not SECONDS or MIN-MAX (for example 0.2 or 0.1-0.5)")
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) is not None else low
    if high < low:
        raise ValueError(f"{text!r}: the maximum is smaller than the minimum")
    return low, high


class FaultPlan:
    """One draw per request from `random.Random(seed)`: the same seed gives the same sequence of faults."""

    def __init__(self, faults: Sequence[tuple[str, float]], seed: int) -> None:
        self.faults = tuple(faults)
        self._random = random.Random(seed)

    def draw(self) -> str | None:
        if not self.faults:
            return None
        point = self._random.random()
        cumulative = 0.0
        for kind, probability in self.faults:
            cumulative += probability
            if point < cumulative:
                return kind
        return None


# -- the connection seam ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class ConnectionHandle:
    """The TCP connection under a request, and whether the server has asked it to shut down."""

    transport: asyncio.Transport | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)


class ConnectionExposingProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's own HTTP protocol, plus the connection in each request's scope (ASGI has no standard way to reach
    the socket, and faults such as a reset need it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handle = ConnectionHandle()
        inner = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = self.handle
            await inner(scope, receive, send)

        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.handle.transport = transport  # type: ignore[assignment]

    def shutdown(self) -> None:
        super().shutdown()
        self.handle.closing.set()  # a held request lets go, so a graceful shutdown does not wait for its client


def _transport(scope: Scope) -> asyncio.Transport:
    handle = (scope.get("extensions") or {}).get(CONNECTION_EXTENSION)
    if handle is None or handle.transport is None:
        raise RuntimeError("this fault needs the connection: run the app with pipeline.serve.app.serve(), whose "
                           "uvicorn protocol exposes it")
    return handle.transport


async def _until_disconnected(receive: Receive) -> None:
    # The body has been read already, so the server's next message is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


class ResetConnection(Response):
    """No HTTP answer at all: the socket is closed with SO_LINGER 0, so the kernel sends a TCP RST."""

    def __init__(self) -> None:
        super().__init__(status_code=500)  # never sent: there is no HTTP answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport(scope)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await _until_disconnected(receive)


@dataclass(slots=True)
class Gauge:
    """How many of something are going on now (requests held by the timeout fault), for /stats."""

    value: int = 0


class HoldUntilClientLeaves(Response):
    """Never answer: wait, without blocking anything else, until the client hangs up (or the server shuts down).

    `held` counts the requests being held, so a test can wait for the hold itself instead of guessing its start."""

    def __init__(self, held: Gauge | None = None) -> None:
        super().__init__(status_code=500)  # never sent: there is no HTTP answer
        self.held = held or Gauge()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handle = (scope.get("extensions") or {}).get(CONNECTION_EXTENSION)
        gone = asyncio.ensure_future(_until_disconnected(receive))
        waits: set[asyncio.Future[Any]] = {gone}
        if handle is not None:
            waits.add(asyncio.ensure_future(handle.closing.wait()))
        self.held.value += 1
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not gone.done():
                _transport(scope).abort()
                await gone
        finally:
            self.held.value -= 1
            for waiting in waits:
                waiting.cancel()


class TruncatedResponse(Response):
    """Headers announce the whole body's Content-Length, about half of it is sent, then the connection closes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport(scope)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: max(1, len(self.body) // 2)],
                    "more_body": True})
        transport.close()  # a FIN after what was written is flushed: the client reads a short body, then EOF
        await _until_disconnected(receive)
