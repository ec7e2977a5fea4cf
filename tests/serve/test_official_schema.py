"""The official OpenAI schema, both ways, as the official `openai` SDK carries it (no copy of it in this repository).

Requests: every body `audiosum run` sent in real runs (recorded by `serve --record`) validates strictly against the
SDK's request params of its endpoint — unknown keys fail. Answers: the SDK, with strict response validation, parses
every success body `serve` gives and raises the right error class, with the error body parsed, for every status.
"""

from __future__ import annotations

import base64
import io
import json
import re
import typing
import wave
from collections.abc import Iterator
from typing import Any

import openai
import pydantic
import pytest
from openai.types.audio.speech_create_params import SpeechCreateParams
from openai.types.batch_create_params import BatchCreateParams
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.file_create_params import FileCreateParams
from openai.types.shared import ErrorObject
from peers import RunningServer, api_env, start_server, stop_server
from runs import run_cli
from typing_extensions import is_typeddict

# Endpoint → the SDK's params type for its JSON body. A new endpoint joins with one row; a recorded request to an
# endpoint with no row fails the test (and /files, multipart, needs a row that decodes its form fields first).
REQUEST_TYPES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/chat/completions"): CompletionCreateParamsNonStreaming,
    ("POST", "/v1/audio/speech"): SpeechCreateParams,
    ("POST", "/v1/batches"): BatchCreateParams,
    ("POST", "/v1/files"): FileCreateParams,   # multipart: its form fields are decoded first (_form_fields)
}
MULTIPART = {("POST", "/v1/files")}
BODILESS = {("GET", "/v1/models")}
# Requests that carry no body at all: reads, deletes and a batch's cancel (the id is in the path).
BODILESS_PATHS = re.compile(r"\A(GET|DELETE) /v1/(models|files|batches)(/[^/]+(/content)?)?\Z"
                            r"|\APOST /v1/batches/[^/]+/cancel\Z")

# Status → the SDK's exception class for it (openai._client._make_status_error); 408 has none of its own.
STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 408: openai.APIStatusError, 409: openai.ConflictError,
    422: openai.UnprocessableEntityError, 429: openai.RateLimitError, 500: openai.InternalServerError,
    502: openai.InternalServerError, 503: openai.InternalServerError, 504: openai.InternalServerError,
}
SPEECH = {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}


# -- a strict validator over the SDK's TypedDicts ----------------------------------------------------------------

def _forbid_extra_keys(tp: Any, seen: set[int]) -> None:
    """pydantic ignores unknown keys of a TypedDict unless its own config forbids them, and a TypeAdapter cannot
    pass a config down: set one on every TypedDict reachable from `tp` (in this test process only)."""
    if id(tp) in seen:
        return
    seen.add(id(tp))
    if is_typeddict(tp):
        tp.__pydantic_config__ = pydantic.ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
        for hint in typing.get_type_hints(tp, include_extras=True).values():
            _forbid_extra_keys(hint, seen)
        return
    for arg in typing.get_args(tp):
        _forbid_extra_keys(arg, seen)


def _drained(value: Any) -> Any:
    """The validated value with every lazy Iterable validator run: pydantic checks an `Iterable[...]` field's items
    only as they are iterated, and the SDK types messages and content parts as Iterables."""
    if isinstance(value, dict):
        return {key: _drained(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [_drained(item) for item in value]
    return value


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def validate_request(params_type: Any, body: Any) -> Any:
    if params_type not in _ADAPTERS:
        _forbid_extra_keys(params_type, set())
        _ADAPTERS[params_type] = pydantic.TypeAdapter(params_type)
    # validate_python on the decoded JSON: pydantic's strict JSON mode mis-reads `str | Iterable[...]` unions.
    return _drained(_ADAPTERS[params_type].validate_python(body))


def _form_fields(body: str) -> dict[str, Any]:
    """A recorded multipart/form-data body as the params the SDK took: a file field becomes (filename, bytes), any
    other field its text. The record holds no headers, so the boundary is read from the body's first line."""
    boundary = body.split("\r\n", 1)[0]
    assert boundary.startswith("--"), "not a multipart body"
    fields: dict[str, Any] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith("--"):
            break
        head, _, content = part.removeprefix("\r\n").partition("\r\n\r\n")
        name = re.search(r'\bname="([^"]*)"', head)
        filename = re.search(r'\bfilename="([^"]*)"', head)
        assert name is not None, head
        value = content.removesuffix("\r\n")
        fields[name.group(1)] = (filename.group(1), value.encode()) if filename else value
    return fields


def validate_recorded(request: dict[str, Any]) -> bool:
    """A recorded request validated against its endpoint's params (False: it has no body, and has none)."""
    endpoint = (request["method"], request["path"])
    if endpoint in BODILESS or BODILESS_PATHS.match(f"{request['method']} {request['path']}"):
        assert request["body"] == ""
        return False
    assert endpoint in REQUEST_TYPES, f"no params type for {endpoint}: add a row to REQUEST_TYPES"
    body = _form_fields(request["body"]) if endpoint in MULTIPART else json.loads(request["body"])
    assert validate_request(REQUEST_TYPES[endpoint], body) == _drained(body)
    return True


# -- end-to-end runs, recorded -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # Batches stay validating for 5 s: long enough to cancel one, and none finishes while the module runs.
    running = start_server("--engine", "tone", "--workers", "1", "--batch-delay", "5", record=True)
    yield running
    stop_server(running)


def _silence_wav(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def recorded(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The requests of three real runs: spoken summaries with a follow-up by audio id, a long text in parts (the
    map step's text-only requests), a recording as input_audio with text output and a text follow-up, and --mode
    narrate."""
    server.set_faults("")
    base = tmp_path_factory.mktemp("runs")
    texts = base / "texts"
    texts.mkdir()
    (texts / "ferry.txt").write_text("The ferry to the island runs twice a day this winter. Tickets cost four "
                                     "pounds. The first boat leaves at eight in the morning.\n")
    sentences = [f"Section {i} of the harbour report counts {i * 7} boats, {i + 3} moorings and {i % 4 + 1} "
                 "cranes, and notes that the sea wall needs repair before the storms of next winter." for i in range(90)]
    (texts / "harbour.txt").write_text("\n\n".join(" ".join(sentences[i:i + 3]) for i in range(0, 90, 3)))
    recordings = base / "recordings"
    recordings.mkdir()
    (recordings / "memo.wav").write_bytes(_silence_wav())
    runs = [
        ("run", str(texts), "-o", str(base / "out-texts"), "--max-input-tokens", "500",
         "--followup", "When does the first boat leave?"),
        ("run", str(recordings), "-o", str(base / "out-recordings"), "--output", "text",
         "--followup", "What was said?"),
        ("run", str(texts / "ferry.txt"), "-o", str(base / "out-narrate"), "--mode", "narrate"),
        # two-step: text model then POST /v1/audio/speech (a follow-up, a recording heard in text, narrate)
        ("run", str(texts), "-o", str(base / "out-two-step"), "--strategy", "two-step", "--max-input-tokens", "500",
         "--voice", "cedar", "--voice-instructions", "Warm and clear.", "--followup", "How much is a ticket?"),
        ("run", str(recordings), "-o", str(base / "out-two-step-recordings"), "--strategy", "two-step"),
        ("run", str(texts / "ferry.txt"), "-o", str(base / "out-two-step-narrate"), "--strategy", "two-step",
         "--mode", "narrate"),
    ]
    for args in runs:
        result = run_cli(*args, env=api_env(server))
        assert result.exit_code == 0, (args, result.stderr)
    lines = server.record_path.read_text().splitlines()  # type: ignore[union-attr]
    return [json.loads(line) for line in lines]


def test_every_request_audiosum_sent_is_valid_under_the_official_params(recorded: list[dict[str, Any]]) -> None:
    checked = sum(validate_recorded(request) for request in recorded)
    assert checked >= 8


def test_the_record_holds_bodies_and_never_a_header(server: RunningServer, recorded: list[dict[str, Any]]) -> None:
    assert all(set(request) == {"method", "path", "body"} for request in recorded)
    assert server.key not in server.record_path.read_text()  # type: ignore[union-attr]


def test_the_recorded_runs_cover_every_request_shape_audiosum_makes(recorded: list[dict[str, Any]]) -> None:
    """So that the test above is not vacuous: spoken and text-only requests, the map step's token cap, an earlier
    answer given back by its audio id, and a recording as input_audio all went over the wire."""
    bodies = [json.loads(r["body"]) for r in recorded if r["path"] == "/v1/chat/completions"]
    messages = [m for body in bodies for m in body["messages"]]
    parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
    assert any(body.get("modalities") == ["text", "audio"] and body["audio"]["format"] == "wav" for body in bodies)
    assert any(body.get("modalities") == ["text"] for body in bodies)
    assert any("max_completion_tokens" in body for body in bodies)
    assert any(m["role"] == "assistant" and "audio" in m for m in messages)
    assert any(p["type"] == "input_audio" and p["input_audio"]["format"] == "wav" for p in parts)
    speech = [json.loads(r["body"]) for r in recorded if r["path"] == "/v1/audio/speech"]
    assert any(body.get("instructions") and body["voice"] == "cedar" for body in speech)


@pytest.mark.parametrize("mutate", [
    lambda body: body.update(temperatur=0.2),                                    # a misspelt top-level key
    lambda body: body["messages"][0].update(name_of_speaker="x"),               # an unknown key in a message
    lambda body: body["messages"][1].update(content=[{"type": "input_audio",    # an unknown key in a part
                                                      "input_audio": {"data": "AAAA", "format": "wav", "rate": 1}}]),
    lambda body: body["audio"].update(format="ogg"),                             # a value outside the enum
    lambda body: body.update(max_completion_tokens="120"),                       # a string for an integer
    lambda body: body.pop("model"),                                              # a required key missing
])
def test_the_validator_refuses_what_the_official_schema_refuses(mutate) -> None:
    body = json.loads(json.dumps({**SPEECH, "messages": [{"role": "system", "content": "Speak briefly."},
                                                         {"role": "user", "content": "The ferry runs twice a day."}]}))
    assert validate_request(CompletionCreateParamsNonStreaming, body) == body
    mutate(body)
    with pytest.raises(pydantic.ValidationError):
        validate_request(CompletionCreateParamsNonStreaming, body)


# -- the SDK reads every answer ------------------------------------------------------------------------------------

def _sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=30,
                         _strict_response_validation=True)


def test_the_sdk_parses_every_success_body_strictly(server: RunningServer) -> None:
    server.set_faults("")
    client = _sdk(server)
    spoken = client.chat.completions.create(messages=[{"role": "user", "content": "The ferry runs twice a day."}],
                                            **SPEECH)
    assert spoken.choices[0].message.audio.id.startswith("audio_") and spoken.usage.total_tokens > 0
    follow_up = client.chat.completions.create(messages=[
        {"role": "user", "content": "The ferry runs twice a day."},
        {"role": "assistant", "audio": {"id": spoken.choices[0].message.audio.id}},
        {"role": "user", "content": "How often does it run?"}], **SPEECH)
    assert follow_up.choices[0].message.audio.transcript
    text = client.chat.completions.create(model="gpt-4o-mini", max_completion_tokens=40, messages=[
        {"role": "user", "content": "The ferry runs twice a day. Tickets cost four pounds."}])
    assert text.choices[0].message.content and text.choices[0].message.audio is None
    heard = client.chat.completions.create(model="gpt-4o-audio-preview", modalities=["text"], messages=[
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {
            "data": base64.b64encode(_silence_wav()).decode(), "format": "wav"}}]}])
    assert heard.choices[0].message.content
    assert "gpt-4o-audio-preview" in {model.id for model in client.models.list()}


@pytest.mark.parametrize("status", sorted(STATUS_ERRORS))
def test_the_sdk_raises_the_right_error_for_every_status(server: RunningServer, status: int) -> None:
    server.set_faults("429=1" if status == 429 else f"{status}=1")
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            _sdk(server).chat.completions.create(messages=[{"role": "user", "content": "Hello."}], **SPEECH)
    finally:
        server.set_faults("")
    error = caught.value
    assert type(error) is STATUS_ERRORS[status] and error.status_code == status
    # The SDK found the error object (it reads body["error"]): the four fields the official Error requires, all of
    # them fields of the SDK's ErrorObject.
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}
    assert set(error.body) <= set(ErrorObject.model_fields)
    parsed = ErrorObject.model_validate(error.body, strict=True)
    assert parsed.message and parsed.message in error.message
    assert error.code == parsed.code and error.type == parsed.type and error.param == parsed.param
    assert error.request_id is not None and error.request_id.startswith("req_")


# -- the endpoints beyond chat: speech, files, batches -----------------------------------------------------------

BATCH_LINE = {"custom_id": "one", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "The ferry runs daily."}]}}


def test_the_sdk_requests_to_speech_files_and_batches_are_valid_and_their_answers_parse_strictly(
        server: RunningServer) -> None:
    """Every request the SDK sends to the new endpoints validates against the official params (the upload's form
    fields too), and every answer parses with the SDK's strict response types."""
    server.set_faults("")
    client = _sdk(server)
    already = len(_raw_records(server))
    speech = client.audio.speech.create(model="gpt-4o-mini-tts", input="The ferry runs daily.", voice="alloy",
                                        response_format="wav", speed=1.5, instructions="Calmly.")
    assert speech.response.headers["content-type"] == "audio/wav" and speech.content.startswith(b"RIFF")
    uploaded = client.files.create(file=("lines.jsonl", (json.dumps(BATCH_LINE) + "\n").encode()), purpose="batch")
    assert isinstance(uploaded, openai.types.FileObject) and client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).json() == BATCH_LINE
    assert uploaded.id in [f.id for f in client.files.list(limit=5, order="desc")]
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"purpose": "schema"})
    assert isinstance(batch, openai.types.Batch) and client.batches.retrieve(batch.id).id == batch.id
    assert batch.id in [b.id for b in client.batches.list(limit=5)]
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    assert client.files.delete(uploaded.id).deleted
    new = _raw_records(server)[already:]
    assert {(r["method"], r["path"].split("/")[2]) for r in new} >= {("POST", "audio"), ("POST", "files"),
                                                                     ("GET", "files"), ("DELETE", "files"),
                                                                     ("POST", "batches"), ("GET", "batches")}
    assert sum(validate_recorded(request) for request in new) == 3  # speech, the upload, the batch


def _raw_records(server: RunningServer) -> list[dict[str, Any]]:
    """The record as written (bodies as sent), not RunningServer.recorded()'s parsed bodies."""
    return [json.loads(line) for line in server.record_path.read_text().splitlines()]  # type: ignore[union-attr]


def test_the_validator_refuses_a_wrong_upload() -> None:
    good = {"file": ("lines.jsonl", b"{}"), "purpose": "batch"}
    assert validate_request(FileCreateParams, good) == _drained(good)
    for bad in ({**good, "purpose": "batches"}, {**good, "purpos": "batch"}, {"purpose": "batch"}):
        with pytest.raises(pydantic.ValidationError):
            validate_request(FileCreateParams, bad)


@pytest.mark.parametrize("call", [
    pytest.param(lambda c: c.audio.speech.create(model="tts-1", input="a" * 4097, voice="alloy"), id="speech-4097"),
    pytest.param(lambda c: c.audio.speech.create(model="tts-1", input="Hi.", voice="robot"), id="speech-voice"),
    pytest.param(lambda c: c.files.create(file=("x.jsonl", b'{"custom_id": 1}'), purpose="batch"), id="files-jsonl"),
    pytest.param(lambda c: c.files.retrieve("file-missing"), id="files-404"),
    pytest.param(lambda c: c.files.content("file-missing"), id="files-content-404"),
    pytest.param(lambda c: c.files.delete("file-missing"), id="files-delete-404"),
    pytest.param(lambda c: c.batches.create(input_file_id="file-x", endpoint="/v1/audio/speech",
                                            completion_window="24h"), id="batches-endpoint"),
    pytest.param(lambda c: c.batches.retrieve("batch_missing"), id="batches-404"),
    pytest.param(lambda c: c.batches.cancel("batch_missing"), id="batches-cancel-404"),
])
def test_the_new_endpoints_errors_parse_as_the_official_error(server: RunningServer, call: Any) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        call(_sdk(server))
    error = caught.value
    assert type(error) is STATUS_ERRORS[error.status_code]
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}
    parsed = ErrorObject.model_validate(error.body, strict=True)
    assert parsed.message in error.message and error.request_id is not None and error.request_id.startswith("req_")


@pytest.mark.parametrize("status", sorted(STATUS_ERRORS))
def test_speech_raises_the_right_error_for_every_status(server: RunningServer, status: int) -> None:
    server.set_faults(f"{status}=1")
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            _sdk(server).audio.speech.create(model="gpt-4o-mini-tts", input="Hello.", voice="alloy")
    finally:
        server.set_faults("")
    assert type(caught.value) is STATUS_ERRORS[status] and caught.value.status_code == status
    ErrorObject.model_validate(caught.value.body, strict=True)
