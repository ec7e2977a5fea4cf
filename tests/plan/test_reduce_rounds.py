"""Long documents whose part summaries will not shrink: bounded rounds, a clear reason, every attempt recorded.

A compatible server that ignores the length asked for (here: one that echoes its input) is played through httpx's
public transport seam, since `audiosum serve` keeps to the length and would always converge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from pipeline.errors import DocumentError
from pipeline.models import Document, RunSettings
from pipeline.providers.openai import OpenAIProvider


def test_summaries_that_do_not_shrink_fail_the_document_with_their_attempts() -> None:
    seen: list[dict] = []

    def echo(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        text = body["messages"][-1]["content"]
        return httpx.Response(200, json={"model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

    paragraphs = [f"Paragraph {i} says something about the harbour, the budget and the bridge. " * 12
                  for i in range(30)]
    document = Document(id="long", source="long.txt", text="\n\n".join(paragraphs), sha256="0" * 64)
    settings = RunSettings(inputs=("long.txt",), out_dir=Path("out"), provider="openai", api_key="sk-test",
                           base_url="http://test/v1", max_input_tokens=500)
    provider = OpenAIProvider(settings, transport=httpx.MockTransport(echo))
    try:
        with pytest.raises(DocumentError, match="no shorter than") as raised:
            asyncio.run(provider.summarise(document, settings))
    finally:
        asyncio.run(provider.aclose())
    assert len(raised.value.attempts) == len(seen) > 1  # every map request made is recorded
    assert all(b["max_completion_tokens"] > 0 for b in seen)  # the cap that keeps a compliant model converging
