"""Rate limits for `audiosum serve --rpm/--tpm`: two continuously refilling token buckets and OpenAI's headers.

Pure arithmetic over an injected monotonic clock; it never sleeps and knows nothing about HTTP bodies or sockets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Floating-point slack when comparing a bucket's level with a cost, so that waiting exactly the advertised
# retry-after-ms always succeeds.
_SLACK = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """A bucket of `capacity` units that refills at `rate` units per second; it may go negative (debt)."""

    rate: float
    capacity: float
    monotonic: Callable[[], float]
    level: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.level = self.capacity
        self.updated = self.monotonic()

    def _refill(self) -> None:
        now = self.monotonic()
        self.level = min(self.capacity, self.level + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` fits (0.0 if it fits now).

        A cost larger than the capacity fits when the bucket is full, and leaves it in debt; otherwise such a
        request could never run, and the long-run rate is still exactly `rate`.
        """
        self._refill()
        need = min(cost, self.capacity) - self.level
        return 0.0 if need <= _SLACK else need / self.rate

    def take(self, cost: float) -> None:
        self._refill()
        self.level -= cost

    def remaining(self) -> int:
        self._refill()
        return max(0, math.floor(self.level + _SLACK))

    def until_full(self) -> float:
        self._refill()
        return max(0.0, (self.capacity - self.level) / self.rate)


def bucket_for(per_minute: int, burst_s: float, monotonic: Callable[[], float]) -> TokenBucket | None:
    """The bucket for a per-minute limit (None for 0 = unlimited): `burst_s` seconds of refill, at least 1."""
    if per_minute <= 0:
        return None
    rate = per_minute / 60.0
    return TokenBucket(rate=rate, capacity=max(1.0, rate * burst_s), monotonic=monotonic)


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's verdict on one request."""

    admitted: bool
    wait_s: float = 0.0
    limited_by: str | None = None       # "requests" or "tokens" when not admitted
    limit: int = 0                       # the per-minute limit that refused it
    requested: int = 0
    too_large: bool = False              # the request alone exceeds the per-minute token limit: never fits


class ServerRateLimits:
    """Requests-per-minute and tokens-per-minute buckets, checked together and charged together."""

    def __init__(self, rpm: int = 0, tpm: int = 0, burst_s: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if burst_s <= 0:
            raise ValueError("burst must be positive")
        self.rpm, self.tpm = rpm, tpm
        self.requests = bucket_for(rpm, burst_s, monotonic)
        self.tokens = bucket_for(tpm, burst_s, monotonic)

    @property
    def enabled(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def admit(self, prompt_tokens: int) -> Admission:
        """Charge one request and its prompt tokens if both fit now; otherwise charge nothing."""
        if self.tokens is not None and prompt_tokens > self.tpm:
            return Admission(False, limited_by="tokens", limit=self.tpm, requested=prompt_tokens, too_large=True)
        request_wait = self.requests.wait_for(1) if self.requests is not None else 0.0
        token_wait = self.tokens.wait_for(prompt_tokens) if self.tokens is not None else 0.0
        if request_wait > 0 or token_wait > 0:
            if request_wait >= token_wait:
                return Admission(False, request_wait, "requests", self.rpm, 1)
            return Admission(False, token_wait, "tokens", self.tpm, prompt_tokens)
        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None:
            self.tokens.take(prompt_tokens)
        return Admission(True)

    def charge(self, tokens: int) -> None:
        """Charge tokens known only after answering (the completion); the debt delays later requests."""
        if self.tokens is not None:
            self.tokens.take(tokens)

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the configured limits (an unlimited dimension is left out)."""
        headers: dict[str, str] = {}
        for name, limit, bucket in (("requests", self.rpm, self.requests), ("tokens", self.tpm, self.tokens)):
            if bucket is None:
                continue
            headers[f"x-ratelimit-limit-{name}"] = str(limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining())
            headers[f"x-ratelimit-reset-{name}"] = format_duration(bucket.until_full())
        return headers


def retry_after_headers(wait_s: float) -> dict[str, str]:
    """`retry-after` (whole seconds, rounded up) and `retry-after-ms` (ms until it fits, at least 1)."""
    wait_ms = max(1, math.ceil(wait_s * 1000))
    return {"retry-after": str(max(1, math.ceil(wait_ms / 1000))), "retry-after-ms": str(wait_ms)}


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it (Go style, ms precision): 0s, 12ms, 1.5s, 6m0s, 1h2m3s."""
    # Rounded up to whole ms (so a reset is never announced early), with slack for binary fractions like 0.012.
    total_ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole, millis = divmod(rest_ms, 1000)
    secs = f"{whole}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
