"""The retry policy: what is retried, how long it waits, what it records; fed by the real classifier from HTTP answers."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import httpx
import pytest

from pipeline.clock import FakeClock
from pipeline.errors import ApiError, AuthenticationFailed, PermanentApiError, TransientError
from pipeline.providers.openai import classify_error_response
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


def _answer(status: int, code: str | None = None, error_type: str = "invalid_request_error",
            headers: dict[str, str] | None = None) -> ApiError:
    """What the real classifier makes of an HTTP answer with this status and an OpenAI error body."""
    body = {"error": {"message": f"status {status}", "type": error_type, "param": None, "code": code}}
    response = httpx.Response(status, json=body, headers={"x-request-id": "req_1", **(headers or {})})
    return classify_error_response(response, retry_after_s=retry_after_seconds(response.headers, now_wall=0.0))


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
        _answer(429, "rate_limit_exceeded", "requests", headers={"retry-after": "2"}),
        _answer(500, error_type="server_error"),
        TransientError("late", cause="timeout"),     # no HTTP answer at all: the transport's timeout
    ])
    assert result == "spoken"
    assert [a.outcome for a in attempts] == ["http_429_rate_limit_exceeded", "http_500", "timeout", "ok"]
    assert clock.slept[0] == 2.0
    assert 0 < clock.slept[1] <= 1.0 and 0 < clock.slept[2] <= 2.0
    assert [a.wait_s for a in attempts[:3]] == pytest.approx(clock.slept, abs=1e-4)
    assert paused == pytest.approx(clock.slept)


RETRIED = [408, 409, 429, 500, 502, 503, 504, 520]
REFUSED = [400, 401, 403, 404, 405, 413, 415, 422]


@pytest.mark.parametrize("status", RETRIED)
def test_retried_statuses_are_retried_until_the_attempts_run_out(status: int) -> None:
    clock = FakeClock()
    with pytest.raises(TransientError) as caught:
        _run(RetryPolicy(max_attempts=4, clock=clock), [_answer(status) for _ in range(4)])
    assert [a.status for a in caught.value.attempts] == [status] * 4
    assert len(clock.slept) == 3
    result, attempts = _run(RetryPolicy(max_attempts=4, clock=FakeClock()), [_answer(status)] * 2)
    assert result == "spoken" and [a.status for a in attempts] == [status, status, 200]


@pytest.mark.parametrize("status", REFUSED)
def test_refused_statuses_are_sent_once(status: int) -> None:
    clock = FakeClock()
    error = _answer(status, code="invalid_api_key" if status == 401 else None)
    with pytest.raises(PermanentApiError if status != 401 else AuthenticationFailed) as caught:
        _run(RetryPolicy(clock=clock), [error])
    assert clock.slept == []
    assert [a.status for a in caught.value.attempts] == [status]


def test_a_quota_429_is_refused_and_a_rate_limit_429_waits_what_the_server_says() -> None:
    clock = FakeClock()
    with pytest.raises(PermanentApiError) as caught:
        _run(RetryPolicy(clock=clock), [_answer(429, "insufficient_quota", "insufficient_quota")])
    assert clock.slept == [] and len(caught.value.attempts) == 1
    limited = _answer(429, "rate_limit_exceeded", "requests", headers={"retry-after-ms": "1500"})
    _, attempts = _run(RetryPolicy(clock=clock), [limited])
    assert clock.slept == [1.5] and [a.outcome for a in attempts] == ["http_429_rate_limit_exceeded", "ok"]


def test_gives_up_after_max_attempts_with_every_attempt_recorded() -> None:
    clock = FakeClock()
    with pytest.raises(TransientError) as caught:
        _run(RetryPolicy(max_attempts=3, clock=clock), [_answer(503, error_type="server_error")] * 5)
    assert [a.number for a in caught.value.attempts] == [1, 2, 3]
    assert len(clock.slept) == 2
    assert caught.value.attempts[-1].wait_s == 0.0


def test_server_hint_is_capped() -> None:
    clock = FakeClock()
    _run(RetryPolicy(clock=clock), [_answer(429, "rate_limit_exceeded", headers={"retry-after-ms": "10000000"})])
    assert clock.slept == [120.0]
