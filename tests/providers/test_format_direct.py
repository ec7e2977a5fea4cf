"""Format-direct: with --format mp3/opus/flac and --loudness off the API is asked for that format (chat audio.format, or
the speech endpoint's response_format) and its bytes are saved as they came, tagged, never decoded and re-encoded;
the file decodes to the sidecar's duration. With a loudness target, or parts to stitch, WAV is asked for as before."""

from __future__ import annotations

import json
from pathlib import Path

import mutagen
import pytest
from peers import RunningServer, api_env, start_server, stop_server
from runs import one_document, run_cli

from pipeline.audio import duration_of, sniff_container


@pytest.fixture(scope="module")
def server() -> RunningServer:
    running = start_server("--engine", "tone", record=True)
    yield running  # type: ignore[misc]
    stop_server(running)



def _asked(server: RunningServer, since: int) -> list[str]:
    """The audio format of each spoken request since `since` (chat audio.format or speech response_format)."""
    formats = []
    for request in server.recorded()[since:]:
        body = request["body"]
        if request["path"] == "/v1/chat/completions" and isinstance(body, dict) and "audio" in body:
            formats.append(body["audio"]["format"])
        elif request["path"] == "/v1/audio/speech":
            formats.append(body["response_format"])
    return formats


@pytest.mark.parametrize(("audio_format", "container"), [
    ("mp3", "mp3"),
    pytest.param("opus", "ogg", marks=pytest.mark.slow),  # the same path as mp3, another container
    pytest.param("flac", "flac", marks=pytest.mark.slow),
])
@pytest.mark.parametrize("strategy", ["chat-audio", "two-step"])
def test_the_api_is_asked_for_the_format_and_its_bytes_are_saved_tagged(
        server: RunningServer, tmp_path: Path, audio_format: str, container: str, strategy: str) -> None:
    since = len(server.recorded())
    out = tmp_path / "out"
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(out), "--format", audio_format, "--loudness", "off",
                     "--strategy", strategy, "--followup", "When does the first boat leave?", env=api_env(server))
    assert result.exit_code == 0, result.stderr
    assert _asked(server, since) == [audio_format, audio_format]  # the summary and the answer, both direct
    sidecar = json.loads((out / "ferry.json").read_text())
    main = out / sidecar["audio_file"]
    assert main.suffix == f".{audio_format}" and sidecar["encoded_by"] == "api"
    assert sniff_container(main.read_bytes()[:4096]) == container
    assert duration_of(main) == pytest.approx(sidecar["duration_s"], abs=0.05) and sidecar["duration_s"] > 0.5
    assert mutagen.File(main)["title" if audio_format != "mp3" else "TIT2"]  # tagged in place
    answer = out / sidecar["followups"][0]["file"]
    assert answer.suffix == f".{audio_format}" and duration_of(answer) > 0.5


def test_a_loudness_target_asks_for_wav_and_publishes_it(server: RunningServer, tmp_path: Path) -> None:
    since = len(server.recorded())
    out = tmp_path / "out"
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(out), "--format", "mp3", env=api_env(server))
    assert result.exit_code == 0, result.stderr
    assert _asked(server, since) == ["wav"]
    sidecar = json.loads((out / "ferry.json").read_text())
    assert "encoded_by" not in sidecar and sidecar["loudness_lufs"] == pytest.approx(-16, abs=1.0)
