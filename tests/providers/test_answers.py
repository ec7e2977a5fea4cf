"""Parsing an answer from the wire: odd values a compatible server may send are tolerated, never trusted."""

from __future__ import annotations

import httpx
from peers import RunningServer

from pipeline.providers.openai import parse_answer


def test_usage_values_that_are_not_integers_are_ignored(tone_server: RunningServer) -> None:
    answer = httpx.post(f"{tone_server.base_url}/chat/completions",
                        headers={"authorization": f"Bearer {tone_server.key}"},
                        json={"model": "m", "modalities": ["text", "audio"],
                              "audio": {"voice": "alloy", "format": "wav"},
                              "messages": [{"role": "user", "content": "The pool reopens in May."}]}).json()
    answer["usage"] = {"prompt_tokens": "12k", "completion_tokens": None, "total_tokens": True}
    response = httpx.Response(200, json=answer)
    summary = parse_answer(response, provider="openai", voice="alloy")
    assert summary.usage.prompt_tokens == 0 and summary.usage.total_tokens == 0
