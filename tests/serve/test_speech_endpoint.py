"""`audiosum serve`'s POST /v1/audio/speech, with the official SDK as the client: every response format decodes to
the length the engine spoke, the request is checked like the real service, and faults, limits, the record and /stats
apply as for chat. Also: text models such as gpt-4.1-mini answer chat requests with text, within
max_completion_tokens."""

from __future__ import annotations

import io
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from peers import RunningServer, running_server, start_server, stop_server

from pipeline.audio import ffmpeg_command, ffmpeg_environment

TEXT = "Hello there. The ferry leaves at eight."  # seven words: the tone engine gives 0.4 s a word
TONE_SECONDS = 7 * 0.4
RATE = 24_000
DEMUXERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac"}
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("--engine", "tone", "--workers", "1", record=True)
    yield running
    stop_server(running)


def _client(server: RunningServer, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key or server.key, max_retries=0, timeout=30,
                         _strict_response_validation=True)


def _decoded_seconds(data: bytes, response_format: str) -> float:
    """The audio's length, decoded by the bundled ffmpeg to 24 kHz mono PCM (wav by the wave module)."""
    if response_format == "pcm":
        return len(data) / 2 / RATE
    if response_format == "wav":
        with wave.open(io.BytesIO(data), "rb") as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (RATE, 1, 2)
            return reader.getnframes() / RATE
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"speech.{response_format}"
        source.write_bytes(data)
        command = [*ffmpeg_command("error", protocols="file,pipe"), "-f", DEMUXERS[response_format],
                   "-i", f"file:{source}", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1"]
        done = subprocess.run(command, capture_output=True, env=ffmpeg_environment(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return len(done.stdout) / 2 / RATE


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format_decodes_to_the_spoken_length(server: RunningServer, response_format: str) -> None:
    speech = _client(server).audio.speech.create(model="gpt-4o-mini-tts", input=TEXT, voice="coral",
                                                 response_format=response_format)
    data, headers = speech.content, speech.response.headers
    assert headers["content-type"] == CONTENT_TYPES[response_format]
    assert headers["x-request-id"].startswith("req_")
    seconds = _decoded_seconds(data, response_format)
    assert abs(seconds - TONE_SECONDS) < 0.15, (response_format, seconds)
    if response_format == "pcm":
        assert len(data) == int(TONE_SECONDS * RATE) * 2  # raw 24 kHz 16-bit mono, exactly
    if response_format == "aac":
        assert data[0] == 0xFF and data[1] & 0xF0 == 0xF0  # an ADTS sync word: a stream, not an MP4 box


def test_speed_and_a_custom_voice_and_the_default_format(server: RunningServer) -> None:
    client = _client(server)
    fast = client.audio.speech.create(model="tts-1", input=TEXT, voice={"id": "voice_1234"}, speed=2.0,
                                      response_format="pcm", instructions="Speak cheerfully.")
    assert abs(len(fast.content) / 2 / RATE - TONE_SECONDS / 2) < 0.05
    default = client.audio.speech.create(model="gpt-4o-mini-tts", input=TEXT, voice="alloy")
    assert default.response.headers["content-type"] == "audio/mpeg"
    assert abs(_decoded_seconds(default.content, "mp3") - TONE_SECONDS) < 0.15


def test_the_longest_input_is_spoken_and_one_more_character_is_a_400(server: RunningServer) -> None:
    client = _client(server)
    spoken = client.audio.speech.create(model="gpt-4o-mini-tts", input="a" * 4096, voice="alloy",
                                        response_format="pcm")
    assert len(spoken.content) > 0
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="gpt-4o-mini-tts", input="a" * 4097, voice="alloy")
    error = caught.value
    assert error.param == "input" and error.code == "string_above_max_length" and error.type == "invalid_request_error"
    assert set(error.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


@pytest.mark.parametrize("change, param", [
    ({"voice": "robot"}, "voice"),
    ({"voice": {"id": "not-a-voice"}}, "voice"),
    ({"response_format": "ogg"}, "response_format"),
    ({"speed": 4.5}, "speed"),
    ({"speed": 0.2}, "speed"),
    ({"model": "gpt-4o-mini"}, "model"),
    ({"input": ""}, "input"),
])
def test_invalid_fields_are_a_400_naming_the_param(server: RunningServer, change: dict, param: str) -> None:
    asked = {"model": "gpt-4o-mini-tts", "input": TEXT, "voice": "alloy", **change}
    with pytest.raises(openai.BadRequestError) as caught:
        _client(server).audio.speech.create(**asked)
    assert caught.value.param == param


def test_a_missing_input_is_a_400(server: RunningServer) -> None:
    response = httpx.post(server.base_url + "/audio/speech", json={"model": "tts-1", "voice": "alloy"},
                          headers={"Authorization": f"Bearer {server.key}"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


def test_auth_faults_record_and_stats_apply_with_their_own_counters(server: RunningServer) -> None:
    server.set_faults("", reset_stats=True)
    client = _client(server)
    with pytest.raises(openai.AuthenticationError):
        _client(server, key="sk-wrong").audio.speech.create(model="tts-1", input=TEXT, voice="alloy")
    server.set_faults("503=1")
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client.audio.speech.create(model="tts-1", input=TEXT, voice="alloy")
    finally:
        server.set_faults("")
    assert caught.value.status_code == 503
    client.audio.speech.create(model="tts-1", input="Recorded words.", voice="alloy", response_format="wav")
    stats = server.stats()
    assert stats["speech"] == {"requests": 3, "ok": 1, "error_401": 1, "fault_503": 1}
    assert stats["counts"] == {"requests": 0, "ok": 0}  # chat's counters do not count speech
    recorded = [r for r in server.recorded() if r["path"] == "/v1/audio/speech"]
    assert {"model": "tts-1", "input": "Recorded words.", "voice": "alloy", "response_format": "wav"} in [
        r["body"] for r in recorded]


@pytest.mark.slow  # its own server (--rpm 1): seconds to start on a busy machine
def test_rate_limits_count_a_speech_request_as_one_request() -> None:
    with running_server("--engine", "tone", "--workers", "1", "--rpm", "1") as limited:
        client = _client(limited)
        first = client.audio.speech.with_raw_response.create(model="tts-1", input=TEXT, voice="alloy",
                                                             response_format="pcm")
        assert first.headers["x-ratelimit-limit-requests"] == "1"
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as caught:
            client.audio.speech.create(model="tts-1", input=TEXT, voice="alloy", response_format="pcm")
        assert caught.value.code == "rate_limit_exceeded"
        assert int(caught.value.response.headers["retry-after-ms"]) > 0
        assert limited.stats()["speech"]["rate_limited"] == 1


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-4o-mini"])
def test_text_models_answer_with_text_within_max_completion_tokens(server: RunningServer, model: str) -> None:
    client = _client(server)
    document = " ".join(f"The ferry number {i} leaves the harbour at {i} in the morning and returns at noon."
                        for i in range(1, 12))
    whole = client.chat.completions.create(model=model, messages=[{"role": "user", "content": document}])
    assert whole.choices[0].message.content and whole.choices[0].message.audio is None
    capped = client.chat.completions.create(model=model, max_completion_tokens=8,
                                            messages=[{"role": "user", "content": document}])
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 8
    assert len(capped.choices[0].message.content or "") <= 8 * 4
    assert model in {m.id for m in client.models.list()}


@pytest.mark.slow
def test_the_local_engine_speaks_the_input_with_the_neural_voice(local_server: RunningServer) -> None:
    speech = _client(local_server).audio.speech.create(model="gpt-4o-mini-tts", input=TEXT, voice="alloy",
                                                       response_format="flac")
    assert 1.0 < _decoded_seconds(speech.content, "flac") < 10.0
