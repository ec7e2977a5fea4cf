"""The Batch API's output files are read with a cap (a hostile or broken server cannot make the client hold more) and
parsed off the event loop; a line's text passes the redaction boundary."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply, Request

from pipeline.errors import PermanentApiError
from pipeline.models import RunSettings
from pipeline.providers.openai import OpenAIProvider
from pipeline.providers.openai import batch as batch_wire

KEY = "sk-test-batch-wire-0123456789"


def _line(custom_id: str, text: str) -> bytes:
    body = {"choices": [{"message": {"content": text}}], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                                   "total_tokens": 5}}
    return json.dumps({"custom_id": custom_id, "response": {"status_code": 200, "request_id": "req_1",
                                                            "body": body}, "error": None}).encode() + b"\n"


def _outcomes(site: LoopbackSite, wanted: tuple[str, ...] = ("a", "b", "x")) -> list[batch_wire.LineOutcome]:
    settings = RunSettings(inputs=(), out_dir=Path("/nonexistent"), provider="openai", api_base=site.url("/v1"),
                           api_key=KEY, max_attempts=1)
    found: list[batch_wire.LineOutcome] = []

    async def go() -> None:
        provider = OpenAIProvider(settings)
        try:
            await provider.batch_api().read_outcomes("file-out", set(wanted), found.append)
        finally:
            await provider.aclose()

    asyncio.run(go())
    return found


def test_an_output_file_is_parsed_and_its_text_redacted() -> None:
    content = _line("a", "First summary.") + _line("b", f"Leaked {KEY} here.")
    with LoopbackSite(lambda request: Reply(body=content, content_type="application/jsonl")) as site:
        found = {outcome.custom_id: outcome for outcome in _outcomes(site)}
    assert found["a"].text == "First summary." and found["a"].usage.total_tokens == 5
    assert KEY not in (found["b"].text or "") and "Leaked" in (found["b"].text or "")


def test_an_output_file_past_the_cap_is_refused_while_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_wire, "MAX_OUTPUT_BYTES", 64 * 1024)
    sent: list[int] = []

    def answer(request: Request) -> Reply:
        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(4096):  # 64 MB offered, 64 KB a chunk
                sent.append(1)
                yield _line("x", "y" * 65_000)
        return Reply(content_type="application/jsonl", chunks=chunks())

    with LoopbackSite(answer) as site, pytest.raises(PermanentApiError, match="over"):
        _outcomes(site)
    assert len(sent) < 4096  # the client stopped reading long before the end


def _streamed_peak(lines: int, tail: bytes) -> tuple[int, list[batch_wire.LineOutcome]]:
    """Peak memory (tracemalloc) while an output file of `lines` lines of `1` and then `tail` streams through."""
    import tracemalloc

    def answer(request: Request) -> Reply:
        def chunks():  # type: ignore[no-untyped-def]
            block = b"1\n" * 32_768  # 64 KB a chunk
            for _ in range(lines // 32_768):
                yield block
            yield tail
        return Reply(content_type="application/jsonl", chunks=chunks())

    with LoopbackSite(answer) as site:
        tracemalloc.start()
        try:
            found = _outcomes(site)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak, found


def test_reading_an_output_file_holds_one_line_not_the_file() -> None:
    # 8 MB of "1\n" lines (4 M lines: the old reader held 1.3 GB of them), then one line of ours.
    peak, found = _streamed_peak(4 * 1024 * 1024, _line("a", "Kept."))
    assert [(o.custom_id, o.text) for o in found] == [("a", "Kept.")]
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB while reading 8 MB"


def test_reading_an_output_file_at_the_cap_holds_one_line_not_the_file() -> None:
    peak, found = _streamed_peak(32 * 1024 * 1024 - 65_536, _line("b", "Kept too."))
    assert [(o.custom_id, o.text) for o in found] == [("b", "Kept too.")]
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB while reading 64 MB"


def test_an_overlong_line_is_skipped_and_the_lines_after_it_are_read() -> None:
    content = _line("a", "x" * (batch_wire.MAX_LINE_BYTES + 10)) + _line("b", "After the long one.")
    with LoopbackSite(lambda request: Reply(body=content, content_type="application/jsonl")) as site:
        found = _outcomes(site)
    assert [(o.custom_id, o.text) for o in found] == [("b", "After the long one.")]


def test_only_the_wanted_lines_are_delivered() -> None:
    content = _line("a", "Ours.") + _line("stranger", "Not ours.") + _line("../../x", "Not ours either.")
    with LoopbackSite(lambda request: Reply(body=content, content_type="application/jsonl")) as site:
        found = _outcomes(site, wanted=("a",))
    assert [o.custom_id for o in found] == ["a"]
