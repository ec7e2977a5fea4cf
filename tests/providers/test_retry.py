"""The retry policy on its own: what is retried, how long it waits, what it records."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from pipeline.clock import FakeClock
from pipeline.errors import AuthenticationFailed, PermanentApiError, TransientError
from pipeline.providers.openai.retry import RetryPolicy, retry_after_seconds


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds({"retry-after-ms": "250"}, now_wall=now) == pytest.approx(0.25)
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}, now_wall=now) == pytest.approx(0.25)
    assert retry_after_seconds({"retry-after": "3"}, now_wall=now) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}, now_wall=now) == 1.5
    date = formatdate(now + 7, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now_wall=now) == pytest.approx(7.0)
    assert retry_after_seconds({"retry-after": formatdate(now - 30, usegmt=True)}, now_wall=now) == 0.0
    assert retry_after_seconds({"retry-after": "whenever"}, now_wall=now) is None
    assert retry_after_seconds({}, now_wall=now) is None


def _run(policy: RetryPolicy, failures: list[Exception]) -> tuple[object, tuple]:
    calls = iter(failures)

    async def once() -> str:
        error = next(calls, None)
        if error is not None:
            raise error
        return "spoken"

    return asyncio.run(policy.call(once))


def test_transient_errors_are_retried_with_server_hints_then_backoff() -> None:
    clock = FakeClock()
    paused: list[float] = []
    policy = RetryPolicy(max_attempts=6, clock=clock, on_retry=lambda error, wait, number, label: paused.append(wait))
    result, attempts = _run(policy, [
        TransientError("slow down", status=429, code="rate_limit_exceeded", retry_after_s=2.0,
                       cause="http_429_rate_limit_exceeded"),
        TransientError("boom", status=500),
        TransientError("late", cause="timeout"),
    ])
    assert result == "spoken"
    assert [a.outcome for a in attempts] == ["http_429_rate_limit_exceeded", "http_500", "timeout", "ok"]
    assert clock.slept[0] == 2.0
    assert 0 < clock.slept[1] <= 1.0 and 0 < clock.slept[2] <= 2.0
    assert [a.wait_s for a in attempts[:3]] == pytest.approx(clock.slept, abs=1e-4)
    assert paused == pytest.approx(clock.slept)


@pytest.mark.parametrize("error", [
    PermanentApiError("bad request", status=400),
    PermanentApiError("quota", status=429, code="insufficient_quota"),
    AuthenticationFailed("bad key", status=401),
    PermanentApiError("not found", status=404),
    PermanentApiError("unprocessable", status=422),
])
def test_permanent_errors_are_never_retried(error: Exception) -> None:
    clock = FakeClock()
    with pytest.raises(type(error)) as caught:
        _run(RetryPolicy(clock=clock), [error])
    assert clock.slept == []
    assert len(caught.value.attempts) == 1


def test_gives_up_after_max_attempts_with_every_attempt_recorded() -> None:
    clock = FakeClock()
    with pytest.raises(TransientError) as caught:
        _run(RetryPolicy(max_attempts=3, clock=clock), [TransientError("boom", status=503)] * 5)
    assert [a.number for a in caught.value.attempts] == [1, 2, 3]
    assert len(clock.slept) == 2
    assert caught.value.attempts[-1].wait_s == 0.0


def test_server_hint_is_capped() -> None:
    clock = FakeClock()
    _run(RetryPolicy(clock=clock), [TransientError("x", status=429, retry_after_s=10_000)])
    assert clock.slept == [120.0]
