"""Regressions found by review: reserved ids, key hygiene, odd usage values, a bug in a worker, huge CSV fields,
credentials in the base URL, and one document bigger than the token budget."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from conftest import SAMPLE_INPUTS, RunningServer, api_env, child_env, run_cli
from pipeline import runner, sources
from pipeline.clock import FakeClock
from pipeline.errors import PermanentApiError
from pipeline.models import Document, RunSettings
from pipeline.providers.openai import parse_answer
from pipeline.providers.openai.ratelimit import RateLimiter


def test_report_is_a_reserved_id() -> None:
    assert sources.safe_doc_id("report") == "report_"
    assert sources.safe_doc_id("Report") == "Report_"
    assert sources.safe_doc_id("notes/report") == "notes__report"


def test_a_key_with_a_trailing_newline_works_and_a_bad_key_is_not_echoed(tone_server: RunningServer,
                                                                         tmp_path: Path) -> None:
    env = child_env(OPENAI_BASE_URL=tone_server.base_url, OPENAI_API_KEY=f"{tone_server.key}\r\n")
    ok = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(tmp_path / "a"), env=env)
    assert ok.exit_code == 0, ok.stderr
    secret = "sk-caf\u00e9-secret"
    bad = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(tmp_path / "b"),
                  env=child_env(OPENAI_BASE_URL=tone_server.base_url, OPENAI_API_KEY=secret))
    assert bad.exit_code == 2 and "OPENAI_API_KEY" in bad.stderr and secret not in bad.stderr


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


class _BuggyProvider:
    name = "buggy"

    async def summarise(self, document: Document, settings: RunSettings):
        raise ValueError("a bug in a provider")

    async def aclose(self) -> None:
        pass


def test_a_bug_still_leaves_a_report_marked_crashed(tmp_path: Path) -> None:
    settings = RunSettings(inputs=(str(SAMPLE_INPUTS / "news"),), out_dir=tmp_path / "out", concurrency=2)
    with pytest.raises(ValueError):
        runner.run(settings, provider=_BuggyProvider())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "crashed" and "a bug in a provider" in report["abort_reason"]


def test_a_csv_field_bigger_than_the_csv_default_is_read(tmp_path: Path) -> None:
    manifest = tmp_path / "big.csv"
    text = "The tide tables were updated. " * 6000  # 180,000 characters
    manifest.write_text(f'id,text\nbig,"{text}"\nsmall,"Short and fine."\n')
    items = list(sources.iter_manifest(manifest))
    assert [type(i).__name__ for i in items] == ["Document", "Document"]


def test_base_url_credentials_never_reach_the_report() -> None:
    settings = RunSettings(inputs=("x",), out_dir=Path("o"), base_url="https://user:pa55@proxy.example:8443/v1?key=abc")
    shown = runner.settings_for_report(settings)["base_url"]
    assert shown == "https://proxy.example:8443/v1"


def test_a_document_over_the_token_budget_fails_at_once_and_holds_nobody_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=60_000, clock=clock)
    with pytest.raises(PermanentApiError):
        limiter.check_fits(1_250_000)

    async def go() -> None:
        await limiter.acquire(200_000)  # estimated bigger than a minute's budget: charged one minute at most
        start = clock.monotonic()
        await limiter.acquire(10)
        assert clock.monotonic() - start <= 60.0 + 1e-6

    asyncio.run(go())


def test_since_is_recorded_and_a_bad_entry_url_fails_alone(tone_server: RunningServer, tmp_path: Path) -> None:
    feed = tmp_path / "f.xml"
    feed.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://x</link>'
                    "<description>d</description>"
                    "<item><title>Bad one</title><link>http://[x</link><guid>http://[x</guid>"
                    "<description>A summary that is long enough to narrate about the harbour.</description></item>"
                    "<item><title>Good</title><guid>urn:ok</guid><pubDate>Tue, 03 Nov 2026 08:00:00 GMT</pubDate>"
                    "<description>The ferry timetable changes on Monday for the winter season.</description>"
                    "</item></channel></rss>")
    out = tmp_path / "out"
    result = run_cli("run", str(feed), "-o", str(out), "--since", "2026-01-01", env=api_env(tone_server))
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["since"].startswith("2026-01-01") and report["status"] == "finished"
    assert "done" in {d["status"] for d in report["documents"]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "ctl", "title": "Bell\u0007 and tab\u000b",
                                    "text": "The pier reopens after repairs on Friday morning."}) + "\n")
    assert run_cli("run", str(manifest), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    import xml.etree.ElementTree as ET
    titles = [t.text for t in ET.parse(out / "podcast.xml").getroot().iter("title")]  # stays valid XML
    assert "Bell and tab" in titles


def test_loudness_is_part_of_the_settings_fingerprint() -> None:
    from pipeline.plan import fingerprint

    document = Document(id="a", source="a", text="t", sha256="s")
    plain = RunSettings(inputs=("x",), out_dir=Path("o"))
    loud = RunSettings(inputs=("x",), out_dir=Path("o"), loudness_lufs=-19.0)
    assert fingerprint(document, plain) != fingerprint(document, loud)
