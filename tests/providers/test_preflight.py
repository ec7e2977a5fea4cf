"""The run's model check before its first request (GET /v1/models/{model}), and the voices that go on the wire."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, api_env, running_server
from runs import child_env, one_document, run_cli

from pipeline.clock import FakeClock
from pipeline.models import RunSettings
from pipeline.providers.openai import OpenAIProvider


def _chat_requests(server: RunningServer) -> int:
    return server.stats()["counts"].get("requests", 0)


def _offered(server: RunningServer) -> set[str]:
    """The ids the server lists, read with a plain GET (not through audiosum)."""
    listed = httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Bearer {server.key}"}).json()
    return {item["id"] for item in listed["data"]}


def test_an_unknown_model_is_a_usage_error_that_lists_the_audio_models_and_sends_no_chat_request(
        tone_server: RunningServer, tmp_path: Path) -> None:
    before = _chat_requests(tone_server)
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--model", "gpt-nonesuch",
                     env=api_env(tone_server))
    assert result.exit_code == 2, result.stderr
    assert "gpt-nonesuch" in result.stderr
    listed = re.search(r"audio-capable models it offers: ([^(]*)\(", result.stderr)
    assert listed is not None, result.stderr
    named = {name.strip() for name in listed.group(1).split(",") if name.strip()}
    offered = _offered(tone_server)
    assert named == {m for m in offered if "audio" in m} and "gpt-audio-1.5" in named
    assert offered - named  # the text-only models the server offers are not suggested
    assert _chat_requests(tone_server) == before
    # The run is recorded as stopped for that reason (exit 2), not as crashed by an internal error.
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "aborted" and "gpt-nonesuch" in report["abort_reason"]
    assert "internal error" not in report["abort_reason"]


def test_a_refused_key_stops_at_the_model_check_without_a_chat_request(tone_server: RunningServer,
                                                                       tmp_path: Path) -> None:
    before, before_models = tone_server.stats()["counts"], tone_server.stats()["models"]
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"),
                     env=api_env(tone_server, key="sk-wrong-key-for-the-model-check"))
    after, after_models = tone_server.stats()["counts"], tone_server.stats()["models"]
    assert result.exit_code == 2 and "the API refused the key" in result.stderr
    assert after.get("requests", 0) == before.get("requests", 0)
    assert after_models.get("error_401", 0) == before_models.get("error_401", 0) + 1


def test_a_shutdown_within_30_days_is_a_warning_and_later_ones_are_not(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    soon, later = today + timedelta(days=10), today + timedelta(days=90)
    folder = one_document(tmp_path)
    with running_server("--engine", "tone", "--shutdown", f"gpt-audio-1.5={soon}",
                        "--shutdown", f"gpt-audio-mini={later}") as server:
        warned = run_cli("run", str(folder), "-o", str(tmp_path / "out1"), env=api_env(server))
        as_json = run_cli("run", str(folder), "-o", str(tmp_path / "out2"), "--log-format", "json",
                          env=api_env(server))
        quiet = run_cli("run", str(folder), "-o", str(tmp_path / "out3"), "--model", "gpt-audio-mini",
                        env=api_env(server))
    assert warned.exit_code == 0, warned.stderr
    assert f"audiosum: warning: model gpt-audio-1.5 shuts down on {soon.isoformat()}" in warned.stderr
    events = [json.loads(line) for line in as_json.stderr.splitlines() if line.startswith("{")]
    warnings = [e for e in events if e.get("event") == "warning" and e.get("kind") == "model_shutdown"]
    assert len(warnings) == 1 and warnings[0]["shutdown_date"] == soon.isoformat(), events
    assert quiet.exit_code == 0 and "shuts down" not in quiet.stderr
    # The report says it too (json and page), and only where it was warned.
    report = json.loads((tmp_path / "out1" / "report.json").read_text())
    shutdown = [w for w in report["warnings"] if w["kind"] == "model_shutdown"]
    assert len(shutdown) == 1 and shutdown[0]["shutdown_date"] == soon.isoformat()
    assert f"shuts down on {soon.isoformat()}" in (tmp_path / "out1" / "report.html").read_text()
    quiet_report = json.loads((tmp_path / "out3" / "report.json").read_text())
    assert not [w for w in quiet_report.get("warnings", []) if w["kind"] == "model_shutdown"]


@pytest.mark.parametrize(("days_before", "warns"), [(30, True), (31, False), (-2, True)])
def test_the_30_day_edge_is_read_from_the_injected_clock(days_before: int, warns: bool) -> None:
    shutdown = date(2027, 2, 14)
    with running_server("--engine", "tone", "--shutdown", f"gpt-audio-1.5={shutdown}") as server:
        noon = datetime(2027, 2, 14, 12, tzinfo=UTC) - timedelta(days=days_before)
        events: list[tuple[str, dict]] = []
        settings = RunSettings(inputs=("x",), out_dir=Path("unused"), provider="openai", api_base=server.base_url,
                               api_key=server.key, model="gpt-audio-1.5")

        async def check() -> None:
            provider = OpenAIProvider(settings, clock=FakeClock(wall_start=noon.timestamp()),
                                      on_event=lambda name, fields: events.append((name, fields)), check_model=True)
            try:
                await provider.preflight()
                await provider.preflight()  # once per provider
            finally:
                await provider.aclose()

        asyncio.run(check())
        models_requests = server.stats()["models"].get("requests", 0)
    warnings = [fields for name, fields in events if name == "warning"]
    assert models_requests == 1
    assert len(warnings) == (1 if warns else 0)
    if warns:
        assert warnings[0]["shutdown_date"] == "2027-02-14" and warnings[0]["days_left"] == days_before


@pytest.mark.parametrize("missing", [
    Reply(404, b"<html>Not Found</html>", content_type="text/html"),
    Reply(405, b'{"error": {"message": "Method not allowed"}}'),
    Reply(200, b"models live elsewhere", content_type="text/plain"),
], ids=["404", "405", "not-json"])
def test_a_server_without_a_models_endpoint_is_not_an_error(tone_server: RunningServer, tmp_path: Path,
                                                            missing: Reply) -> None:
    def relay(request: Request) -> Reply:
        if request.path.startswith("/v1/models"):
            return missing
        forwarded = httpx.post(f"{tone_server.base_url}/chat/completions", content=request.body,
                               headers={"Authorization": f"Bearer {tone_server.key}",
                                        "Content-Type": "application/json"}, timeout=60)
        return Reply(forwarded.status_code, forwarded.content)

    with LoopbackSite(relay) as site:
        result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"),
                         env=child_env(OPENAI_BASE_URL=site.url("/v1"), OPENAI_API_KEY="sk-relay"))
        paths = [r.path for r in site.requests]
    assert result.exit_code == 0, result.stderr
    assert paths.count("/v1/chat/completions") == 1 and paths[0].startswith("/v1/models")


def test_the_dry_run_does_not_check_the_model(tone_server: RunningServer, tmp_path: Path) -> None:
    before = tone_server.stats()["models"].get("requests", 0)
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--dry-run",
                     "--model", "gpt-nonesuch", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    assert tone_server.stats()["models"].get("requests", 0) == before


@pytest.mark.parametrize(("voice", "on_wire"), [("marin", "marin"), ("cedar", "cedar"),
                                                ("voice_1234abcd", {"id": "voice_1234abcd"})])
def test_voices_go_on_the_wire_as_the_api_takes_them(recording_server: RunningServer, tmp_path: Path, voice: str,
                                                     on_wire: object) -> None:
    before = len(recording_server.recorded())
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--voice", voice,
                     env=api_env(recording_server))
    assert result.exit_code == 0, result.stderr
    chats = [r for r in recording_server.recorded()[before:] if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 1 and chats[0]["body"]["audio"]["voice"] == on_wire
    sidecar = json.loads((tmp_path / "out" / "ferry.json").read_text())
    assert voice in json.dumps(sidecar)
