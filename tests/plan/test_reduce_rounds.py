"""Long documents whose part summaries will not shrink: bounded rounds, a clear reason, every attempt recorded.

A compatible server that ignores the length asked for (here: a loopback site that echoes its input) stands in for
`audiosum serve`, which keeps to the length and would always converge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply, Request

from pipeline.errors import DocumentError
from pipeline.models import Document, RunSettings
from pipeline.providers.openai import OpenAIProvider


def test_summaries_that_do_not_shrink_fail_the_document_with_their_attempts() -> None:
    seen: list[dict] = []

    def echo(request: Request) -> Reply:
        body = json.loads(request.body)
        seen.append(body)
        text = body["messages"][-1]["content"]
        return Reply(200, json.dumps({"model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode())

    paragraphs = [f"Paragraph {i} says something about the harbour, the budget and the bridge. " * 12
                  for i in range(30)]
    document = Document(id="long", source="long.txt", text="\n\n".join(paragraphs), sha256="0" * 64)
    with LoopbackSite(echo) as site:
        settings = RunSettings(inputs=("long.txt",), out_dir=Path("out"), provider="openai", api_key="sk-test",
                               api_base=site.url("/v1"), max_input_tokens=500)

        async def summarise() -> None:
            provider = OpenAIProvider(settings)
            try:
                await provider.summarise(document, settings)
            finally:
                await provider.aclose()

        with pytest.raises(DocumentError, match="no shorter than") as raised:
            asyncio.run(summarise())
    assert len(raised.value.attempts) == len(seen) > 1  # every map request made is recorded
    assert all(b["max_completion_tokens"] > 0 for b in seen)  # the cap that keeps a compliant model converging
