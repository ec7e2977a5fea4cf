"""`audiosum serve` speaks the OpenAI wire format: the official SDK is the client that proves it."""

from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import openai
import pytest
from peers import SERVER_KEY, RunningServer, running_server


def _client(server: RunningServer, key: str = SERVER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=30)


def _speak(client: openai.OpenAI, messages: list[dict], **extra):
    return client.chat.completions.create(model="gpt-4o-audio-preview", modalities=["text", "audio"],
                                          audio={"voice": "alloy", "format": "wav"}, messages=messages, **extra)


def test_sdk_text_to_audio_then_second_turn_by_audio_id(tone_server: RunningServer) -> None:
    client = _client(tone_server)
    first = _speak(client, [{"role": "user", "content": "Golden retrievers are gentle dogs. They are loyal and "
                                                        "patient with children. They need daily exercise."}])
    assert first.object == "chat.completion"
    choice = first.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    audio = choice.message.audio
    assert audio.id.startswith("audio_") and audio.expires_at > 0 and audio.transcript
    with wave.open(io.BytesIO(base64.b64decode(audio.data)), "rb") as reader:
        assert reader.getnframes() > 0
    assert first.usage.completion_tokens_details.audio_tokens > 0

    second = _speak(client, [
        {"role": "user", "content": "Golden retrievers are gentle dogs. They are loyal and patient with children."},
        {"role": "assistant", "audio": {"id": audio.id}},
        {"role": "user", "content": "Why are they good with children?"},
    ])
    answer = second.choices[0].message.audio
    assert answer.id != audio.id
    assert "children" in answer.transcript


@pytest.mark.parametrize("extra, param", [
    ({"audio": {"voice": "robot", "format": "wav"}}, "audio.voice"),
    ({"audio": {"voice": "alloy", "format": "ogg-vorbis"}}, "audio.format"),
    ({"modalities": ["text"], "audio": {"voice": "alloy", "format": "wav"}}, "modalities"),
    ({"modalities": ["text"], "audio": openai.NOT_GIVEN}, "modalities"),
])
def test_sdk_gets_bad_request_for_invalid_fields(tone_server: RunningServer, extra: dict, param: str) -> None:
    body = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        _client(tone_server).chat.completions.create(
            model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "Hello there, how are you?"}],
            **body)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param
    assert caught.value.body["type"] == "invalid_request_error"


def test_sdk_gets_bad_request_for_unknown_audio_id(tone_server: RunningServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _speak(_client(tone_server), [
            {"role": "user", "content": "Tell me about bridges."},
            {"role": "assistant", "audio": {"id": "audio_doesnotexist"}},
            {"role": "user", "content": "And tunnels?"},
        ])
    assert caught.value.body["param"] == "messages[1].audio.id"


def test_sdk_gets_authentication_error_for_a_wrong_key(tone_server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _speak(_client(tone_server, key="sk-not-the-right-one"), [{"role": "user", "content": "Hi there."}])
    assert caught.value.body["code"] == "invalid_api_key"
    assert "sk-not-the-right-one" not in json.dumps(caught.value.body)


@pytest.mark.slow  # waits out an audio id's lifetime
def test_expired_audio_id_is_a_bad_request() -> None:
    with running_server("--engine", "tone", "--audio-ttl", "1", key=None) as server:
        client = _client(server, key="anything")
        first = _speak(client, [{"role": "user", "content": "The ferry leaves at noon every day of the week."}])
        # Expiry is in whole seconds (as the API's expires_at is); wait it out on the server's own clock.
        deadline = first.choices[0].message.audio.expires_at
        import time
        while time.time() <= deadline:
            time.sleep(0.05)
        with pytest.raises(openai.BadRequestError):
            _speak(client, [{"role": "user", "content": "The ferry leaves at noon."},
                            {"role": "assistant", "audio": {"id": first.choices[0].message.audio.id}},
                            {"role": "user", "content": "When does it leave?"}])


def test_raw_http_errors_have_the_openai_shape(tone_server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}
    malformed = httpx.post(f"{tone_server.base_url}/chat/completions", content=b"{not json", headers=headers)
    assert malformed.status_code == 400 and set(malformed.json()["error"]) == {"message", "type", "param", "code"}
    missing_key = httpx.post(f"{tone_server.base_url}/chat/completions", content=b"{}",
                             headers={"Content-Type": "application/json"})
    assert missing_key.status_code == 401
    unknown = httpx.get(f"{tone_server.base_url}/nowhere", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"
    models = httpx.get(f"{tone_server.base_url}/models", headers=headers).json()
    assert "gpt-4o-audio-preview" in {m["id"] for m in models["data"]}


def test_pcm16_format_and_audio_input(tone_server: RunningServer) -> None:
    client = _client(tone_server)
    pcm = client.chat.completions.create(
        model="gpt-4o-audio-preview", modalities=["text", "audio"], audio={"voice": "verse", "format": "pcm16"},
        messages=[{"role": "user", "content": "Short text to speak as raw samples, please."}])
    raw = base64.b64decode(pcm.choices[0].message.audio.data)
    assert not raw.startswith(b"RIFF") and len(raw) % 2 == 0 and raw

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x00\x00" * 16000)
    heard = client.chat.completions.create(
        model="gpt-4o-audio-preview", modalities=["text"],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this recording?"},
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(),
                                                    "format": "wav"}}]}])
    assert heard.choices[0].message.audio is None
    # A second of digital silence: the recogniser hears no speech and says so, with the length it measured.
    assert heard.choices[0].message.content == "No speech was recognised in the 1.0 second recording."
    assert heard.usage.prompt_tokens_details.audio_tokens > 0
