"""The retry policy, declared once: which failures are retried, how long to wait, when to give up.

Built from tenacity parts. Reads only pipeline.errors classes and the server's Retry-After hints; sends nothing.
"""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.errors import ApiError, TransientError
from pipeline.models import Attempt

T = TypeVar("T")

MAX_SERVER_HINT_S = 120.0


def retry_after_seconds(headers: Mapping[str, str], *, now_wall: float) -> float | None:
    """The server's wait hint: retry-after-ms, else Retry-After as seconds or an HTTP date; None if absent."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


class wait_server_hint_or(wait_base):
    """Wait what the server asked for (capped); without a hint, fall back to the given strategy."""

    def __init__(self, fallback: wait_base, cap_s: float = MAX_SERVER_HINT_S) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(error, "retry_after_s", None)
        if hint is not None:
            return min(float(hint), self.cap_s)
        return self.fallback(retry_state)


@dataclass
class RetryPolicy:
    """Retry TransientError up to max_attempts; PermanentApiError and DocumentError go straight through."""

    max_attempts: int = 6
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    clock: Clock = SYSTEM_CLOCK
    # Called before each sleep with (error, wait, attempt number, label): e.g. to pause the whole pool.
    on_retry: Callable[[ApiError, float, int, str], None] | None = None

    async def call(self, attempt_once: Callable[[], Awaitable[T]], label: str = "") -> tuple[T, tuple[Attempt, ...]]:
        """Run attempt_once until it succeeds or the policy gives up; every attempt is recorded.

        On giving up, the last error is raised with `.attempts` holding all of them.
        """
        attempts: list[Attempt] = []

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if attempts and isinstance(error, ApiError):
                last = attempts[-1]
                attempts[-1] = Attempt(last.number, last.outcome, last.status, last.error_class, round(wait, 4),
                                       last.elapsed_s, last.request_id)
                if self.on_retry is not None:
                    self.on_retry(error, wait, last.number, label)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            # Without a hint: exponential backoff with full jitter, so a herd of failed tasks spreads out.
            wait=wait_server_hint_or(wait_random_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s)),
            retry=retry_if_exception_type(TransientError),
            sleep=self.clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    started = self.clock.monotonic()
                    number = attempt.retry_state.attempt_number
                    try:
                        result = await attempt_once()
                    except ApiError as error:
                        attempts.append(Attempt(number, error.cause, error.status, type(error).__name__, 0.0,
                                                round(self.clock.monotonic() - started, 4), error.request_id))
                        raise
                    attempts.append(Attempt(number, "ok", 200, None, 0.0,
                                            round(self.clock.monotonic() - started, 4),
                                            getattr(result, "request_id", None)))
                    return result, tuple(attempts)
        except ApiError as error:
            error.attempts = tuple(attempts)
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")
