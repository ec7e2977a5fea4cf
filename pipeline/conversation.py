"""Follow-up questions after a summary: each is asked with the whole conversation so far as history.

Earlier spoken answers travel as `{"role": "assistant", "audio": {"id": ...}}` while their ids live, and as their
transcripts once expired or refused; each choice is recorded. Knows messages, not HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.clock import Clock
from pipeline.errors import PermanentApiError
from pipeline.models import (Attempt, Document, FollowUpAnswer, HistoryTurn, RunSettings, SpokenSummary, Usage)
from pipeline.prompts import parts_context, recording_system_prompt

# An id this close to its expiry is sent as its transcript: the request may take this long to arrive.
EXPIRY_MARGIN_S = 15


class Asker(Protocol):
    clock: Clock

    async def ask(self, document: Document, settings: RunSettings, messages: list[dict[str, Any]],
                  audio_seconds: float = 0.0) -> SpokenSummary: ...


@dataclass(frozen=True, slots=True)
class _Said:
    """One assistant turn as it can be referred to later."""

    transcript: str
    audio_id: str | None
    expires_at: int | None
    no_id_reason: str | None = None


class Conversation:
    """The summary's conversation, grown by one question and answer at a time."""

    def __init__(self, asker: Asker, document: Document, settings: RunSettings,
                 opening: list[dict[str, Any]] | None, summary: SpokenSummary) -> None:
        self._asker = asker
        self._document = document
        self._settings = settings
        self._audio_seconds = (summary.input_seconds or 0.0) if opening is not None else 0.0
        self._turns: list[tuple[str | None, _Said]] = []  # (question that led to it, the answer); None: summary
        if opening is None:
            # Summarised in parts: no one answer covers the recording, so the parts' summaries are the context.
            self._opening: list[dict[str, Any]] = [
                {"role": "system", "content": recording_system_prompt(
                    settings.words, document.instructions or settings.instructions, settings.output != "text")},
                {"role": "user", "content": parts_context(document.title, summary.transcript.split("\n\n"))}]
            self._turns.append((None, _Said(summary.transcript, None, None,
                                            f"summarised in {summary.parts} parts: no single audio id")))
        else:
            self._opening = list(opening)
            self._turns.append((None, _said(summary, settings)))
        self.attempts: tuple[Attempt, ...] = ()
        self.usages: list[Usage] = []

    async def ask(self, question: str) -> FollowUpAnswer:
        """Ask one question; if the server refuses an audio id, ask again with transcripts in their place."""
        messages, history = self._messages(question, refused=None)
        try:
            answer = await self._asker.ask(self._document, self._settings, messages, self._audio_seconds)
        except PermanentApiError as error:
            if error.status != 400 or not any(turn.via == "audio_id" for turn in history):
                raise self._with_earlier_attempts(error)
            self.attempts += tuple(a for a in error.attempts if isinstance(a, Attempt))
            reason = "refused by the server: " + " ".join(str(error).split())[:200]
            messages, history = self._messages(question, refused=reason)
            try:
                answer = await self._asker.ask(self._document, self._settings, messages, self._audio_seconds)
            except PermanentApiError as again:
                raise self._with_earlier_attempts(again)
        self.attempts += answer.attempts
        self.usages.append(answer.usage)
        self._turns.append((question, _said(answer, self._settings)))
        return FollowUpAnswer(question=question, transcript=answer.transcript, wav=answer.wav,
                              duration_s=answer.duration_s, audio_id=answer.audio_id,
                              audio_expires_at=answer.audio_expires_at, history=tuple(history))

    def _messages(self, question: str, refused: str | None) -> tuple[list[dict[str, Any]], list[HistoryTurn]]:
        now = self._asker.clock.wall()
        messages = list(self._opening)
        history: list[HistoryTurn] = []
        for number, (asked, said) in enumerate(self._turns):
            if asked is not None:
                messages.append({"role": "user", "content": asked})
            if said.audio_id is None:
                reason = said.no_id_reason
            elif refused is not None:
                reason = refused
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

    def _with_earlier_attempts(self, error: PermanentApiError) -> PermanentApiError:
        # The runner records the failed document's attempts from the error: include the ones already made.
        error.attempts = self.attempts + tuple(error.attempts)
        return error


def _said(answer: SpokenSummary, settings: RunSettings) -> _Said:
    reason = None
    if answer.audio_id is None:
        reason = "a text answer has no audio id" if settings.output == "text" else "the answer had no audio id"
    return _Said(answer.transcript, answer.audio_id, answer.audio_expires_at, reason)
