"""Requests-per-minute and tokens-per-minute pacing shared by every request of one run.

Given limits are enforced; unknown ones are learned from x-ratelimit-* headers and re-learned as they change.
A 429 pauses the whole pool. It never sends anything itself and keeps no global state.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.errors import PermanentApiError
from pipeline.plan.split import CHARS_PER_TOKEN

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


# A server's reset hint is believed up to this long (as Retry-After is): a budget "spent for 1000 h" would stop the
# run; past the cap the next request finds out, and a 429 says how long to wait.
MAX_RESET_S = 120.0
MAX_HEADER_COUNT = 10**12  # a limit or remaining count past this is not one


def parse_reset_duration(text: str) -> float | None:
    """Seconds in an OpenAI reset duration: '1s', '12ms', '6m0s', '1m30.5s', '2h1m', capped at MAX_RESET_S; None if
    unreadable (or not finite)."""
    seconds = _reset_seconds(text)
    return None if seconds is None or not math.isfinite(seconds) else min(seconds, MAX_RESET_S)


def _reset_seconds(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        try:
            value = float(text)
        except ValueError:
            return None
        return max(0.0, value) if math.isfinite(value) else None
    return total


@dataclass(slots=True)
class _Pace:
    """A GCRA pace: `per_unit` seconds of budget per unit; `tat` is when the budget is next fully free."""

    per_minute: float = 0.0
    tat: float = 0.0
    given: bool = False
    # The server said the budget is spent until then (x-ratelimit-remaining-* 0): no refund brings `tat` before it.
    spent_until: float = 0.0

    @property
    def per_unit(self) -> float:
        return 60.0 / self.per_minute if self.per_minute > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one acquire took: the seconds it waited, and the seconds of token budget it charged (0 while no token
    limit is known), which is exactly what a refund gives back."""

    waited_s: float = 0.0
    charged_s: float = 0.0


class RateLimiter:
    """Paces requests so neither budget is exceeded; one instance per run, shared by all its tasks."""

    def __init__(self, rpm: int = 0, tpm: int = 0, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._requests = _Pace(per_minute=float(rpm), given=rpm > 0)
        self._tokens = _Pace(per_minute=float(tpm), given=tpm > 0)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.pauses = 0

    @property
    def rpm(self) -> float:
        return self._requests.per_minute

    @property
    def tpm(self) -> float:
        return self._tokens.per_minute

    def _wait_needed(self, now: float) -> float:
        return max(self._requests.tat - now, self._tokens.tat - now, self._paused_until - now, 0.0)

    async def acquire(self, tokens: int) -> Reservation:
        """Wait until one request of `tokens` fits both budgets, and charge it; refund() gives the tokens back."""
        waited = 0.0
        charged_s = 0.0
        # The lock makes waiters queue in arrival order (asyncio.Lock is FIFO), so pacing is fair.
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                wait = self._wait_needed(now)
                if wait <= 0:
                    break
                await self._clock.sleep(wait)
                waited += wait
            now = self._clock.monotonic()
            if self._requests.per_unit:
                self._requests.tat = max(self._requests.tat, now) + self._requests.per_unit
            if self._tokens.per_unit:
                # Never hold the pool back more than one minute's budget for a single request.
                charged_s = min(tokens, self._tokens.per_minute) * self._tokens.per_unit
                self._tokens.tat = max(self._tokens.tat, now) + charged_s
        return Reservation(waited, charged_s)

    def refund(self, reservation: Reservation) -> None:
        """Give back the tokens of a request the server refused without doing its work (a 4xx, a 429): what was
        charged, no more (a limit learned since is not applied to it), and never past a spent budget's reset."""
        if reservation.charged_s:
            self._tokens.tat = max(self._tokens.tat - reservation.charged_s, self._tokens.spent_until)

    def check_fits(self, tokens: int) -> None:
        """Refuse at once a request that could never fit a minute's token budget (the server would 429 it)."""
        if self._tokens.per_minute and tokens > self._tokens.per_minute:
            raise PermanentApiError(f"the request needs about {tokens} tokens, more than the "
                                    f"{self._tokens.per_minute:.0f}"
                                    " tokens per minute allowed; shorten the document or raise --tpm",
                                    cause="request_too_large")

    def reconcile(self, estimated: int, actual: int) -> None:
        """Correct the token budget once the server says what a request really cost (0: nothing)."""
        if self._tokens.per_unit:
            charged = min(estimated, self._tokens.per_minute)
            self._tokens.tat += (min(actual, self._tokens.per_minute) - charged) * self._tokens.per_unit

    def pause_for(self, seconds: float) -> None:
        """Hold every task until `seconds` from now (a 429 means the server wants the whole client to wait)."""
        until = self._clock.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn limits from x-ratelimit-* headers (unless given), and pause when a budget is spent."""
        now = self._clock.monotonic()
        for pace, kind in ((self._requests, "requests"), (self._tokens, "tokens")):
            limit = _int(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit and not pace.given and limit != pace.per_minute:
                first = pace.per_minute == 0
                pace.per_minute = float(limit)
                if first:
                    pace.tat = max(pace.tat, now)
            remaining = _int(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = parse_reset_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
            if remaining == 0 and reset:
                # Budget spent: nothing more can succeed before the server's window refills.
                pace.spent_until = max(pace.spent_until, now + reset)
                pace.tat = max(pace.tat, now + (pace.per_unit if kind == "requests" and pace.per_unit else reset))


def _int(value: str | None) -> int | None:
    """A count from a header: a finite number from 0 to MAX_HEADER_COUNT, else None (not a count: ignored)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and 0 <= number <= MAX_HEADER_COUNT else None


# Guesses before the first answer; the calibration below corrects them from the server's `usage`.
TOKENS_PER_MESSAGE = 4
TEXT_TOKENS_PER_WORD = 1.4
SPOKEN_WORDS_PER_SECOND = 2.5
# Audio is billed by the second: about 10 tokens a second heard, 20 a second spoken (OpenAI's audio models: $0.06 a
# minute in at $100 per 1M tokens, $0.24 a minute out at $200).
AUDIO_IN_TOKENS_PER_SECOND = 10.0
AUDIO_OUT_TOKENS_PER_SECOND = 20.0


def text_of(content: object) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts (audio is
    counted by its duration, never by its base64)."""
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content or "")


def prompt_tokens(messages: list[dict[str, object]], audio_seconds: float = 0.0) -> int:
    text = sum(len(text_of(m.get("content"))) / CHARS_PER_TOKEN + TOKENS_PER_MESSAGE for m in messages)
    return int(text + audio_seconds * AUDIO_IN_TOKENS_PER_SECOND)


def answer_tokens(messages: list[dict[str, object]], words: int, audio_in: bool = False) -> tuple[int, int]:
    """(text, audio) tokens expected in the spoken answer to these messages."""
    # A summary is never longer than what it summarises: a 40-word note gets about 40 words back. A recording's
    # length in words is unknown, so its summary is assumed to be the full length.
    document_words = len(text_of(messages[-1].get("content")).split()) if messages and not audio_in else words
    spoken = min(words, document_words)
    return (round(spoken * TEXT_TOKENS_PER_WORD),
            round(spoken / SPOKEN_WORDS_PER_SECOND * AUDIO_OUT_TOKENS_PER_SECOND))


class TokenEstimator:
    """Estimates a request's total tokens (prompt + expected answer) with no tokenizer download.

    A character count and the summary length give a first guess; the ratio of reported to estimated
    totals (a moving average) calibrates every later guess.
    """

    def __init__(self) -> None:
        self.ratio = 1.0
        self.samples = 0

    @staticmethod
    def raw_estimate(messages: list[dict[str, object]], words: int, audio_seconds: float = 0.0) -> int:
        return (prompt_tokens(messages, audio_seconds) + sum(answer_tokens(messages, words, audio_seconds > 0))
                + 3)

    def estimate(self, messages: list[dict[str, object]], words: int,
                 audio_seconds: float = 0.0) -> tuple[int, int]:
        """(calibrated estimate, raw estimate) for a request; audio_seconds of input audio it carries."""
        raw = self.raw_estimate(messages, words, audio_seconds)
        return max(1, round(raw * self.ratio)), raw

    def observe(self, raw_estimate: int, actual_total: int) -> None:
        if raw_estimate <= 0 or actual_total <= 0:
            return
        observed = actual_total / raw_estimate
        self.samples += 1
        weight = max(0.2, 1.0 / self.samples)
        self.ratio += weight * (observed - self.ratio)
