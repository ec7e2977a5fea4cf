"""The follow-up conversation on its own, through its one seam (an Asker): history choices and attempt accounting.

The wire itself is covered over loopback in test_recordings.py; here a scripted asker plays the server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.clock import FakeClock
from pipeline.errors import ApiError, PermanentApiError, TransientError
from pipeline.models import Attempt, Document, RunSettings, SpokenSummary
from pipeline.providers.openai import parse_answer
from pipeline.providers.openai.conversation import EXPIRY_MARGIN_S, Conversation

NOW = 1_800_000_000


def _spoken(text: str, audio_id: str | None, expires_at: int | None = NOW + 3600,
            attempts: int = 1) -> SpokenSummary:
    return SpokenSummary(wav=b"RIFF", transcript=text, sample_rate=24000, duration_s=1.0, provider="openai",
                         model="m", voice="alloy", audio_id=audio_id, audio_expires_at=expires_at,
                         attempts=tuple(Attempt(n, "ok", 200) for n in range(1, attempts + 1)))


class ScriptedAsker:
    """Answers (or raises) from a script, and keeps every request's messages."""

    def __init__(self, script: list[SpokenSummary | ApiError]) -> None:
        self.clock = FakeClock(wall_start=NOW)
        self.script = list(script)
        self.sent: list[list[dict[str, Any]]] = []

    async def answer_turn(self, document: Document, settings: RunSettings, messages: list[dict[str, Any]],
                  audio_seconds: float = 0.0) -> SpokenSummary:
        self.sent.append(messages)
        step = self.script.pop(0)
        if isinstance(step, ApiError):
            raise step
        return step


def _conversation(asker: ScriptedAsker, summary: SpokenSummary) -> Conversation:
    document = Document(id="d", source="d.txt", text="Some text.", sha256="0" * 64)
    settings = RunSettings(inputs=("d.txt",), out_dir=Path("out"), provider="openai")
    opening = [{"role": "system", "content": "s"}, {"role": "user", "content": "Some text."}]
    return Conversation(asker, document, settings, opening, summary)


def _failure(error: ApiError, attempts: int) -> ApiError:
    error.attempts = tuple(Attempt(n, error.cause, error.status) for n in range(1, attempts + 1))
    return error


def test_ids_are_used_until_their_expiry_margin() -> None:
    asker = ScriptedAsker([_spoken("A1.", "audio_a1", NOW + EXPIRY_MARGIN_S + 1), _spoken("A2.", "audio_a2")])
    conversation = _conversation(asker, _spoken("Summary.", "audio_s", NOW + EXPIRY_MARGIN_S))
    first = asyncio.run(conversation.ask("Q1?"))
    assert [(h.via, h.reason) for h in first.history] == [("transcript", "expired")]
    assert asker.sent[0][-2] == {"role": "assistant", "content": "Summary."}
    second = asyncio.run(conversation.ask("Q2?"))
    assert [(h.via, h.reason) for h in second.history] == [("transcript", "expired"), ("audio_id", None)]
    assert asker.sent[1][-2] == {"role": "assistant", "audio": {"id": "audio_a1"}}


def test_a_transient_failure_carries_every_earlier_attempt() -> None:
    asker = ScriptedAsker([_spoken("A1.", "audio_a1", attempts=2), _failure(TransientError("HTTP 500"), 6)])
    conversation = _conversation(asker, _spoken("Summary.", "audio_s"))
    asyncio.run(conversation.ask("Q1?"))
    with pytest.raises(TransientError) as raised:
        asyncio.run(conversation.ask("Q2?"))
    assert len(raised.value.attempts) == 2 + 6


def test_a_400_about_something_else_is_not_retried_with_transcripts() -> None:
    refused = PermanentApiError("HTTP 400 invalid_value: bad voice", status=400, param="audio.voice")
    asker = ScriptedAsker([_failure(refused, 1)])
    with pytest.raises(PermanentApiError):
        asyncio.run(_conversation(asker, _spoken("Summary.", "audio_s")).ask("Q1?"))
    assert len(asker.sent) == 1


def test_a_refused_id_is_asked_again_as_text_once() -> None:
    refused = PermanentApiError("HTTP 400: Audio with id 'audio_s' was not found or has expired.", status=400,
                                param="messages[2].audio.id")
    asker = ScriptedAsker([_failure(refused, 1), _spoken("A1.", "audio_a1"), _spoken("A2.", "audio_a2")])
    conversation = _conversation(asker, _spoken("Summary.", "audio_s"))
    first = asyncio.run(conversation.ask("Q1?"))
    second = asyncio.run(conversation.ask("Q2?"))
    assert len(asker.sent) == 3 and len(conversation.attempts) == 3
    assert [h.via for h in first.history + second.history] == ["transcript"] * 3
    assert all(h.reason and h.reason.startswith("refused by the server") for h in second.history)


@pytest.mark.parametrize("audio", [{"id": 7, "expires_at": "2030-01-01T00:00:00Z"},
                                   {"id": "", "expires_at": True}])
def test_odd_audio_id_types_are_not_trusted(audio: dict[str, Any]) -> None:
    import base64

    from pipeline.engine import tone

    wav = tone.tone(["One sentence."]).wav
    body = {"model": "m", "choices": [{"message": {"role": "assistant", "audio": {
        **audio, "data": base64.b64encode(wav).decode(), "transcript": "One sentence."}}}]}
    summary = parse_answer(httpx.Response(200, json=body), provider="openai", voice="alloy")
    assert summary.audio_id is None and summary.audio_expires_at is None
