"""--strategy two-step against `audiosum serve` over loopback: a text model writes the summary, POST /v1/audio/speech
speaks exactly that text; both requests are in the sidecar, each model has its own limiter, faults on either endpoint
are retried, follow-ups carry their history as text."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, api_env, running_server, start_server, stop_server
from runs import run_cli

from pipeline.models import Document, RunSettings, SpokenSummary
from pipeline.providers.openai import OpenAIProvider
from pipeline.providers.openai.speech import MAX_INPUT_CHARS, PCM_SAMPLE_RATE

TWO_STEP = ("--strategy", "two-step")


@pytest.fixture(scope="module")
def speech_server() -> RunningServer:
    server = start_server("--engine", "tone", record=True)
    yield server  # type: ignore[misc]
    stop_server(server)


def _documents(tmp_path: Path, count: int = 2) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(count):
        (folder / f"doc{number}.txt").write_text(
            f"Story {number}. The ferry to the island runs twice a day this winter. Tickets cost four pounds. "
            "The first boat leaves at eight in the morning and the last returns at six.\n")
    return folder


def _wire(server: RunningServer, since: int) -> list[dict]:
    return [r for r in server.recorded()[since:] if r["path"] in ("/v1/chat/completions", "/v1/audio/speech")]


def test_two_step_writes_then_speaks_and_the_sidecar_records_both_requests(speech_server: RunningServer,
                                                                          tmp_path: Path) -> None:
    before = len(speech_server.recorded())
    out = tmp_path / "out"
    result = run_cli("run", str(_documents(tmp_path)), "-o", str(out), *TWO_STEP, "--voice", "marin",
                     "--voice-instructions", "Calm and unhurried.", env=api_env(speech_server))
    assert result.exit_code == 0, result.stderr
    wire = _wire(speech_server, before)
    chats = [r["body"] for r in wire if r["path"] == "/v1/chat/completions"]
    speeches = [r["body"] for r in wire if r["path"] == "/v1/audio/speech"]
    assert len(chats) == len(speeches) == 2  # one of each per document
    assert {c["model"] for c in chats} == {"gpt-4.1-mini"} and all("audio" not in c for c in chats)
    assert all(s["model"] == "gpt-4o-mini-tts" and s["voice"] == "marin" and s["response_format"] == "pcm"
               and s["instructions"] == "Calm and unhurried." for s in speeches)
    for doc in ("doc0", "doc1"):
        sidecar = json.loads((out / f"{doc}.json").read_text())
        # The transcript is exactly the text the speech endpoint was given.
        assert sidecar["transcript"] in {s["input"] for s in speeches}
        assert sidecar["strategy"] == "two-step" and sidecar["voice_instructions"] == "Calm and unhurried."
        steps = {step["step"]: step for step in sidecar["steps"]}
        assert steps["text"]["model"] == "gpt-4.1-mini" and steps["text"]["endpoint"] == "/chat/completions"
        assert steps["speech"]["model"] == "gpt-4o-mini-tts" and steps["speech"]["endpoint"] == "/audio/speech"
        assert steps["text"]["requests"] == steps["speech"]["requests"] == 1
        assert steps["text"]["request_ids"] and steps["speech"]["request_ids"]
        assert steps["text"]["usage"]["total_tokens"] > 0 and not steps["text"]["usage_estimated"]
        assert steps["speech"]["usage_estimated"] and steps["speech"]["characters"] == len(sidecar["transcript"])
        with wave.open(str(out / f"{doc}.wav"), "rb") as reader:
            assert reader.getframerate() == PCM_SAMPLE_RATE
            assert reader.getnframes() / PCM_SAMPLE_RATE == pytest.approx(sidecar["duration_s"], abs=0.01)
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["requests"] == 4
    assert report["totals"]["cost_per_spoken_minute_usd"] > 0


def test_a_summary_over_the_speech_limit_is_spoken_in_parts_cut_at_sentence_ends() -> None:
    """A 1,500-word answer (about 11,000 characters) goes to the speech endpoint in parts of at most 4,096 characters,
    each ending at a sentence end, in order; the parts' audio is stitched into one WAV."""
    written = " ".join(f"Sentence number {n} tells the listener one more fact about the long harbour works."
                       for n in range(130))
    spoken: list[str] = []

    def answer(request: Request) -> Reply:
        if request.path.endswith("/audio/speech"):
            text = json.loads(request.body)["input"]
            if len(text) > MAX_INPUT_CHARS:
                return Reply(400, json.dumps({"error": {"message": "input too long", "type": "invalid_request_error",
                                                        "param": "input", "code": None}}).encode())
            spoken.append(text)
            return Reply(body=b"\x00\x01" * 2400, content_type="audio/pcm")
        return Reply(body=json.dumps(_chat_answer(written)).encode())

    with LoopbackSite(answer) as site:
        summary = _summarise(site, "Long harbour works.", words=1500)
    assert len(spoken) >= 3 and all(text.endswith(".") for text in spoken)
    assert " ".join(spoken) == written == summary.transcript
    assert summary.duration_s > len(spoken) * 0.1  # every part's audio, with the pauses between them
    speech_step = next(step for step in summary.steps if step.step == "speech")
    assert len(speech_step.request_ids) == len(spoken) and speech_step.characters == len(written)


def _chat_answer(text: str) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}}


def _summarise(site: LoopbackSite, text: str, **options: object) -> SpokenSummary:
    settings = RunSettings(inputs=(), out_dir=Path("/nonexistent"), provider="openai", api_base=site.url("/v1"),
                           api_key="sk-test", strategy="two-step", retry_backoff_s=0.001, **options)  # type: ignore[arg-type]
    document = Document(id="d", source="d.txt", text=text, sha256="0" * 64)

    async def go() -> SpokenSummary:
        provider = OpenAIProvider(settings)
        try:
            return await provider.summarise(document, settings)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_faults_on_both_endpoints_are_retried_and_every_document_is_made(tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--faults", "500=0.25,429=0.15", "--seed", "7",
                        "--fault-retry-after", "0.01-0.02") as server:
        out = tmp_path / "out"
        result = run_cli("run", str(_documents(tmp_path, 6)), "-o", str(out), *TWO_STEP, "--retry-backoff",
                         "0.01", "--max-attempts", "10", env=api_env(server))
        assert result.exit_code == 0, result.stderr
        stats = server.stats()
    faulted_chat = sum(v for k, v in stats["counts"].items() if k.startswith("fault_"))
    faulted_speech = sum(v for k, v in stats["speech"].items() if k.startswith("fault_"))
    assert faulted_chat and faulted_speech, stats  # both endpoints failed some requests
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["done"] == 6 and report["totals"]["retries"] == faulted_chat + faulted_speech


def test_follow_ups_in_two_step_carry_the_history_as_text(speech_server: RunningServer, tmp_path: Path) -> None:
    before = len(speech_server.recorded())
    out = tmp_path / "out"
    result = run_cli("run", str(_documents(tmp_path, 1)), "-o", str(out), *TWO_STEP, "--followup",
                     "When does the first boat leave?", env=api_env(speech_server))
    assert result.exit_code == 0, result.stderr
    chats = [r["body"] for r in _wire(speech_server, before) if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    history = chats[1]["messages"]
    assert history[-1] == {"role": "user", "content": "When does the first boat leave?"}
    summary_turn = history[-2]
    assert summary_turn["role"] == "assistant" and isinstance(summary_turn["content"], str)  # text, no audio id
    sidecar = json.loads((out / "doc0.json").read_text())
    assert summary_turn["content"] == sidecar["transcript"]
    assert sidecar["followups"][0]["history"][0]["via"] == "transcript"
    assert "two-step" in sidecar["followups"][0]["history"][0]["reason"]
    assert (out / sidecar["followups"][0]["file"]).stat().st_size > 44
    assert {step["step"]: step["requests"] for step in sidecar["steps"]} == {"text": 2, "speech": 2}


def test_each_model_learns_its_own_rate_limit_from_its_own_answers() -> None:
    """The text model's answers announce 600 requests a minute, the speech model's 30: two limiters, each learning
    only from its own endpoint (a shared one would pace the text model at the speech model's rate)."""
    def answer(request: Request) -> Reply:
        if request.path.endswith("/audio/speech"):
            return Reply(body=b"\x00\x01" * 2400, content_type="audio/pcm",
                         headers={"x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "29"})
        body = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "The ferry runs twice a day."}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}}
        return Reply(body=json.dumps(body).encode(),
                     headers={"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599"})

    with LoopbackSite(answer) as site:
        settings = RunSettings(inputs=(), out_dir=Path("/nonexistent"), provider="openai", api_base=site.url("/v1"),
                               api_key="sk-test", strategy="two-step")
        document = Document(id="d", source="d.txt", text="The ferry runs twice a day.", sha256="0" * 64)

        async def go() -> tuple[float, float, float]:
            provider = OpenAIProvider(settings)
            try:
                summary = await provider.summarise(document, settings)
                assert summary.transcript == "The ferry runs twice a day."
                text_limiter, _ = provider.paced("gpt-4.1-mini")
                speech_limiter, _ = provider.paced("gpt-4o-mini-tts")
                return text_limiter.rpm, speech_limiter.rpm, summary.duration_s
            finally:
                await provider.aclose()

        text_rpm, speech_rpm, seconds = asyncio.run(go())
    assert (text_rpm, speech_rpm) == (600, 30)
    assert seconds == pytest.approx(2400 / PCM_SAMPLE_RATE)


def test_a_speech_answer_that_is_not_audio_is_retried_as_a_broken_answer() -> None:
    calls = {"speech": 0}

    def answer(request: Request) -> Reply:
        if request.path.endswith("/audio/speech"):
            calls["speech"] += 1
            if calls["speech"] == 1:  # a proxy's JSON page, then an odd byte count (cut short)
                return Reply(body=b'{"ok": true}')
            if calls["speech"] == 2:
                return Reply(body=b"\x00" * 4801, content_type="audio/pcm")
            return Reply(body=b"\x00\x01" * 4800, content_type="audio/pcm")
        body = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "Short."}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
        return Reply(body=json.dumps(body).encode())

    with LoopbackSite(answer) as site:
        settings = RunSettings(inputs=(), out_dir=Path("/nonexistent"), provider="openai", api_base=site.url("/v1"),
                               api_key="sk-test", strategy="two-step", retry_backoff_s=0.001)
        document = Document(id="d", source="d.txt", text="Short.", sha256="0" * 64)

        async def go() -> tuple[list[str], bytes]:
            provider = OpenAIProvider(settings)
            try:
                summary = await provider.summarise(document, settings)
                return [a.outcome for a in summary.attempts], summary.wav
            finally:
                await provider.aclose()

        outcomes, wav = asyncio.run(go())
    assert outcomes == ["ok", "broken_answer", "broken_answer", "ok"]  # text ok; speech twice broken, then ok
    with wave.open(io.BytesIO(wav), "rb") as reader:
        assert reader.getnframes() == 4800
