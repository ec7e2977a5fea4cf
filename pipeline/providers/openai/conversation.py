"""Follow-up questions after a summary: each is asked with the whole conversation so far as history.

Earlier spoken answers travel as `{"role": "assistant", "audio": {"id": ...}}` while their ids live, and as their
transcripts once expired or refused; each choice is recorded. Knows messages, not HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.clock import Clock
from pipeline.errors import ApiError, PermanentApiError, keeping_attempts
from pipeline.models import (
    Attempt,
    Document,
    FollowUpAnswer,
    HistoryTurn,
    RequestStep,
    RunSettings,
    SpokenSummary,
    Usage,
)

# An id this close to its expiry is sent as its transcript: the request may take this long to arrive.
EXPIRY_MARGIN_S = 15


class Asker(Protocol):
    clock: Clock

    async def answer_turn(self, document: Document, settings: RunSettings, messages: list[dict[str, Any]],
                          audio_seconds: float = 0.0, *, direct: bool = True) -> SpokenSummary: ...


@dataclass(frozen=True, slots=True)
class _Said:
    """One assistant turn as it can be referred to later."""

    transcript: str
    audio_id: str | None
    expires_at: int | None
    no_id_reason: str | None = None


class Conversation:
    """The summary's conversation, grown by one question and answer at a time."""

    def __init__(self, asker: Asker, document: Document, settings: RunSettings, opening: list[dict[str, Any]],
                 summary: SpokenSummary) -> None:
        self._asker = asker
        self._document = document
        self._settings = settings
        self._opening = list(opening)
        # The recording rides along in every follow-up when it opened the conversation (one part).
        self._audio_seconds = (summary.input_seconds or 0.0) if summary.parts == 1 else 0.0
        self._turns: list[tuple[str | None, _Said]] = [(None, _said(summary, settings))]  # None: the summary
        self.attempts: tuple[Attempt, ...] = ()
        self.usages: list[Usage] = []
        self.steps: list[RequestStep] = []  # two-step: each answer's text and speech requests
        # Once the server has refused this conversation's audio ids, every later turn goes as text: its newer
        # ids would most likely be refused too, and each refusal costs a request.
        self._refused: str | None = None

    async def ask(self, question: str) -> FollowUpAnswer:
        """Ask one question; if the server refuses the audio ids, ask again with transcripts in their place, and
        send transcripts from then on."""
        messages, history = self._messages(question)
        with keeping_attempts(lambda: self.attempts):
            try:
                answer = await self._asker.answer_turn(self._document, self._settings, messages, self._audio_seconds)
            except ApiError as error:
                if not (_refuses_audio_ids(error) and any(turn.via == "audio_id" for turn in history)):
                    raise
                self.attempts += tuple(a for a in error.attempts if isinstance(a, Attempt))
                self._refused = "refused by the server: " + " ".join(str(error).split())[:200]
                messages, history = self._messages(question)
                answer = await self._asker.answer_turn(self._document, self._settings, messages, self._audio_seconds)
        self.attempts += answer.attempts
        self.usages.append(answer.usage)
        self.steps.extend(answer.steps)
        self._turns.append((question, _said(answer, self._settings)))
        return FollowUpAnswer(question=question, transcript=answer.transcript, wav=answer.wav,
                              duration_s=answer.duration_s, audio_id=answer.audio_id,
                              audio_expires_at=answer.audio_expires_at, history=tuple(history),
                              audio_format=answer.audio_format)

    def _messages(self, question: str) -> tuple[list[dict[str, Any]], list[HistoryTurn]]:
        now = self._asker.clock.wall()
        messages = list(self._opening)
        history: list[HistoryTurn] = []
        for number, (asked, said) in enumerate(self._turns):
            if asked is not None:
                messages.append({"role": "user", "content": asked})
            if said.audio_id is None:
                reason = said.no_id_reason
            elif self._refused is not None:
                reason = self._refused
            elif said.expires_at is not None and said.expires_at - EXPIRY_MARGIN_S <= now:
                reason = "expired"
            else:
                messages.append({"role": "assistant", "audio": {"id": said.audio_id}})
                history.append(HistoryTurn(turn=number, via="audio_id"))
                continue
            messages.append({"role": "assistant", "content": said.transcript})
            history.append(HistoryTurn(turn=number, via="transcript", reason=reason))
        messages.append({"role": "user", "content": question})
        return messages, history


def _refuses_audio_ids(error: ApiError) -> bool:
    """A 400 about the request's audio ids (expired or unknown): the param names one, or names nothing at all.

    A 400 that points at another param (a bad voice, say) is the request's own fault and is not retried.
    """
    return (isinstance(error, PermanentApiError) and error.status == 400
            and (error.param is None or error.param.endswith("audio.id")))


def _said(answer: SpokenSummary, settings: RunSettings) -> _Said:
    reason = None
    if answer.audio_id is None:
        if settings.output == "text":
            reason = "a text answer has no audio id"
        elif answer.steps:
            reason = "two-step: the speech endpoint gives no audio id"
        elif answer.parts > 1 and answer.input_seconds is not None:
            reason = f"the recording was summarised in {answer.parts} parts: no single audio id"
        else:
            reason = "the answer had no audio id"
    return _Said(answer.transcript, answer.audio_id, answer.audio_expires_at, reason)
