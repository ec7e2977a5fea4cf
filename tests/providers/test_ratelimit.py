"""The client's limiter and token estimate, on an injected clock: minute windows pass in microseconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply

from pipeline.clock import FakeClock
from pipeline.errors import ApiError, PermanentApiError
from pipeline.models import Document, RunSettings
from pipeline.providers.openai import OpenAIProvider, build_request_body
from pipeline.providers.openai.ratelimit import RateLimiter, TokenEstimator, parse_reset_duration


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("12ms", 0.012), ("6m0s", 120.0), ("1m30.5s", 90.5), ("2h1m", 120.0), ("0s", 0.0),
    ("0.5", 0.5), ("", None), ("soon", None), ("1x", None),
    # a server's hint is believed up to MAX_RESET_S (120 s), as Retry-After is; not a finite number: unreadable
    ("1000h", 120.0), ("inf", None), ("1e999", None), ("nan", None),
])
def test_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_reset_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


async def _send_times(limiter: RateLimiter, clock: FakeClock, costs: list[int]) -> list[float]:
    times: list[float] = []

    async def one(cost: int) -> None:
        await limiter.acquire(cost)
        times.append(clock.monotonic())

    await asyncio.gather(*(one(c) for c in costs))
    return times


def in_loop(test):
    """Run an async test body in one event loop (a limiter belongs to one loop, as in a real run)."""
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    wrapper.__name__ = test.__name__
    return wrapper


@in_loop
async def test_requests_per_minute_are_paced_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, clock=clock)
    times = await _send_times(limiter, clock, [1] * 50)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap == pytest.approx(0.1) for gap in gaps)
    # 50 requests at 10 a second: the last leaves 4.9 s after the first, never sooner.
    assert times[-1] - times[0] == pytest.approx(4.9)


@in_loop
async def test_tokens_per_minute_bound_big_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=6000, tpm=60_000, clock=clock)  # 1,000 tokens a second
    times = await _send_times(limiter, clock, [2000, 2000, 500])
    assert times[1] - times[0] == pytest.approx(2.0)
    assert times[2] - times[1] == pytest.approx(2.0)


@in_loop
async def test_reconcile_gives_back_unused_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=60_000, clock=clock)
    await _send_times(limiter, clock, [3000])
    limiter.reconcile(estimated=3000, actual=1000)
    start = clock.monotonic()
    await _send_times(limiter, clock, [10])
    assert clock.monotonic() - start == pytest.approx(1.0)


@in_loop
async def test_limits_are_learned_from_headers_and_follow_changes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert await _send_times(limiter, clock, [1, 1, 1]) == [clock.now] * 3  # nothing known: no pacing
    limiter.observe({"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "100",
                     "x-ratelimit-reset-requests": "10s", "x-ratelimit-limit-tokens": "1000000"})
    assert limiter.rpm == 120 and limiter.tpm == 1_000_000
    times = await _send_times(limiter, clock, [1] * 3)
    assert times[2] - times[0] == pytest.approx(1.0)
    limiter.observe({"x-ratelimit-limit-requests": "60"})
    times = await _send_times(limiter, clock, [1] * 3)
    assert times[2] - times[1] == pytest.approx(1.0)


def test_given_limits_are_not_overridden_by_headers() -> None:
    limiter = RateLimiter(rpm=30, clock=FakeClock())
    limiter.observe({"x-ratelimit-limit-requests": "10000"})
    assert limiter.rpm == 30


@in_loop
async def test_a_spent_budget_and_a_429_pause_everyone() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30.5s"})
    start = clock.monotonic()
    await _send_times(limiter, clock, [1])
    assert clock.monotonic() - start == pytest.approx(90.5)

    limiter.pause_for(2.5)
    start = clock.monotonic()
    times = await _send_times(limiter, clock, [1, 1, 1])
    assert all(t - start == pytest.approx(2.5) for t in times)
    assert limiter.pauses == 1


def test_token_estimate_calibrates_towards_reported_usage() -> None:
    estimator = TokenEstimator()
    messages = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 4000}]
    first, raw = estimator.estimate(messages, 100)
    assert first == raw > 1100
    for _ in range(10):
        estimator.observe(raw, raw * 2)
    calibrated, _ = estimator.estimate(messages, 100)
    assert calibrated == pytest.approx(raw * 2, rel=0.05)


def test_a_document_over_the_token_budget_fails_at_once_and_holds_nobody_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=60_000, clock=clock)
    with pytest.raises(PermanentApiError):
        limiter.check_fits(1_250_000)

    async def go() -> None:
        await limiter.acquire(200_000)  # estimated bigger than a minute's budget: charged one minute at most
        start = clock.monotonic()
        await limiter.acquire(10)
        assert clock.monotonic() - start <= 60.0 + 1e-6

    asyncio.run(go())


# -- refused requests give their tokens back ---------------------------------------------------------------------

@in_loop
async def test_a_refund_gives_back_exactly_what_was_charged() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=60_000, clock=clock)                      # 1,000 tokens a second
    reservation = await limiter.acquire(3000)
    assert reservation.charged_s == pytest.approx(3.0)
    limiter.refund(reservation)
    assert await _send_times(limiter, clock, [10]) == [clock.now] and clock.slept == []   # nothing held back

    learned = RateLimiter(clock=clock)                                  # no limit known when it was charged
    uncharged = await learned.acquire(3000)
    learned.observe({"x-ratelimit-limit-tokens": "60000"})
    await learned.acquire(3000)
    learned.refund(uncharged)                                           # gives back nothing it never took
    start = clock.monotonic()
    await _send_times(learned, clock, [10])
    assert clock.monotonic() - start == pytest.approx(3.0)


@in_loop
async def test_a_refund_never_undoes_a_spent_budget_the_server_announced() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=60_000, clock=clock)
    reservation = await limiter.acquire(3000)
    limiter.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "5s"})
    limiter.refund(reservation)
    start = clock.monotonic()
    await _send_times(limiter, clock, [10])
    assert clock.monotonic() - start == pytest.approx(5.0)


def _refusing_site(status: int, body: dict) -> LoopbackSite:
    """A loopback server that answers every request with `status` and `body` (real HTTP, no mock transport)."""
    return LoopbackSite(lambda request: Reply(status, json.dumps(body).encode(), headers={"x-request-id": "req_1"}))


@pytest.mark.parametrize(("status", "refunded"), [(400, True), (404, True), (422, True), (429, True), (500, False),
                                                  (503, False)])
def test_a_request_the_server_refused_gives_its_tokens_back_to_the_limiter(status: int, refunded: bool) -> None:
    clock = FakeClock()
    error = {"error": {"message": "no", "type": "invalid_request_error", "param": None, "code": None}}
    site = _refusing_site(status, error)
    settings = RunSettings(inputs=("d.txt",), out_dir=Path("out"), provider="openai", tpm=60_000, max_attempts=1,
                           api_base=site.url("/v1"), api_key="sk-test")
    provider = OpenAIProvider(settings, clock=clock)
    document = Document(id="d", source="d.txt", text="The ferry runs twice a day. " * 200, sha256="0" * 64)
    cost, _ = provider.estimator.estimate(build_request_body(document, settings)["messages"], settings.words)
    assert cost > 1000                                                 # over a second of the token budget

    async def go() -> float:
        with pytest.raises(ApiError):
            await provider.summarise(document, settings)
        start = clock.monotonic()
        await provider.limiter.acquire(1)                              # the next request of the run
        await provider.aclose()
        return clock.monotonic() - start

    with site:
        waited = asyncio.run(go())
        assert site.count("/v1/chat/completions") == 1
    # Refused before any work: the next request goes at once. Failed after the server took it (5xx): the tokens
    # stay spent, and the next request waits for them to refill.
    assert waited == (0.0 if refunded else pytest.approx(cost / 1000))


@in_loop
async def test_hostile_rate_limit_headers_neither_stop_nor_crash_the_limiter() -> None:
    """A budget 'spent for 1000 h' pauses at most MAX_RESET_S; a limit of 1e999 (OverflowError in int()) or a
    negative one is not a limit (issue 23 review)."""
    clock = FakeClock()
    limiter = RateLimiter(0, 0, clock=clock)
    limiter.observe({"x-ratelimit-limit-requests": "1e999", "x-ratelimit-limit-tokens": "-5",
                     "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1000h"})
    started = clock.monotonic()
    await limiter.acquire(1)
    assert clock.monotonic() - started <= 120.0 + 1e-6
