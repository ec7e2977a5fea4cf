"""`audiosum serve`'s /v1/files and /v1/batches, with the official SDK as the client (strict response validation):
uploads checked as Batch JSONL, batches that complete, fail a line (an injected fault, an invalid body, an audio
model), are cancelled, or expire; their output and error files as BatchRequestOutput lines."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Batch
from openai.types.chat import ChatCompletion
from openai.types.shared import ErrorObject
from peers import RunningServer, start_server, stop_server
from runs import until

DOCUMENT = "The ferry to the island runs twice a day this winter. Tickets cost four pounds. The first boat leaves at 8."
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("--engine", "tone", "--workers", "1", "--batch-delay", "0.05", record=True)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[RunningServer]:
    """Batches that stay validating for a minute: cancelled at once, or left to expire after 1.5 s."""
    running = start_server("--engine", "tone", "--workers", "1", "--batch-delay", "60", "--batch-expire", "1.5")
    yield running
    stop_server(running)


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=30,
                         _strict_response_validation=True)


def _line(custom_id: str, body: Any = None, **changes: Any) -> dict[str, Any]:
    body = body if body is not None else {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": DOCUMENT}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **changes}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.files.create(file=("requests.jsonl", _jsonl(lines)), purpose="batch").id


def _finished(client: openai.OpenAI, batch_id: str, timeout_s: float = 20.0) -> Batch:
    finished: Batch = until(lambda: (batch := client.batches.retrieve(batch_id)).status in TERMINAL and batch,
                            f"batch {batch_id} ending", deadline_s=timeout_s, every_s=0.02)
    return finished


def _file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [] if file_id is None else [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _error_of(caught: pytest.ExceptionInfo[openai.APIStatusError]) -> ErrorObject:
    assert isinstance(caught.value.body, dict) and set(caught.value.body) == {"message", "type", "param", "code"}
    return ErrorObject.model_validate(caught.value.body, strict=True)


# -- files ----------------------------------------------------------------------------------------------------------

def test_a_file_is_created_retrieved_read_listed_and_deleted(server: RunningServer) -> None:
    client = _client(server)
    data = _jsonl([_line("a"), _line("b")])
    created = client.files.create(file=("mine.jsonl", data), purpose="batch")
    assert created.id.startswith("file-") and created.object == "file" and created.status == "processed"
    assert (created.bytes, created.filename, created.purpose) == (len(data), "mine.jsonl", "batch")
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == data
    assert created.id in {f.id for f in client.files.list()}
    assert created.id not in {f.id for f in client.files.list(purpose="user_data")}
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(created.id)
    assert _error_of(caught).param == "id"
    notes = client.files.create(file=("notes.txt", b"not jsonl at all"), purpose="user_data")
    assert notes.purpose == "user_data"
    client.files.delete(notes.id)


@pytest.mark.parametrize("lines, why", [
    ([{"method": "POST", "url": "/v1/chat/completions", "body": {}}], "custom_id"),
    ([_line("same"), _line("same")], "earlier line"),
    ([_line("a", method="GET")], "method"),
    ([_line("a", url="/v1/audio/speech")], "url"),
    ([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}], "body"),
    (["not an object"], "not a JSON object"),
    ([], "no requests"),
])
def test_a_batch_file_that_is_not_batch_jsonl_is_a_400(server: RunningServer, lines: list[Any], why: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(server).files.create(file=("bad.jsonl", _jsonl(lines)), purpose="batch")
    error = _error_of(caught)
    assert error.param == "file" and error.code == "invalid_batch_file" and why in error.message


def test_a_line_that_is_not_json_and_an_unknown_purpose_are_400s(server: RunningServer) -> None:
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", _jsonl([_line("a")]) + b"{oops\n"), purpose="batch")
    assert "line 2" in _error_of(caught).message
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", _jsonl([_line("a")])), purpose="fine-tune")
    assert _error_of(caught).param == "purpose"


def test_a_file_over_the_cap_is_a_413(server: RunningServer) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        _client(server).files.create(file=("big.txt", b"x" * (16 * 1024 * 1024 + 1)), purpose="user_data")
    assert caught.value.status_code == 413 and _error_of(caught).code == "file_too_large"


def test_uploads_must_be_multipart_and_nothing_else_may_be(server: RunningServer) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    as_json = httpx.post(server.base_url + "/files", json={"purpose": "batch"}, headers=auth, timeout=10)
    assert as_json.status_code == 415
    form = httpx.post(server.base_url + "/chat/completions", files={"file": ("a", b"b")}, headers=auth, timeout=10)
    assert form.status_code == 415


# -- batches --------------------------------------------------------------------------------------------------------

def test_a_batch_completes_with_one_output_line_per_request(server: RunningServer) -> None:
    client = _client(server)
    server.set_faults("", reset_stats=True)
    capped = {"model": "gpt-4.1-mini", "max_completion_tokens": 5, "messages": [{"role": "user", "content": DOCUMENT}]}
    file_id = _upload(client, [_line("first"), _line("second"), _line("capped", capped)])
    created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"run": "ferry"})
    assert created.id.startswith("batch_") and created.status == "validating"
    assert created.request_counts is not None and created.request_counts.total == 3
    batch = _finished(client, created.id)
    assert batch.status == "completed" and batch.metadata == {"run": "ferry"}
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 0)  # type: ignore[union-attr]
    assert batch.created_at <= batch.in_progress_at <= batch.completed_at  # type: ignore[operator]
    assert batch.error_file_id is None and batch.output_file_id is not None
    output = _file_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ["first", "second", "capped"]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
        answer = ChatCompletion.model_validate(line["response"]["body"], strict=False)
        assert answer.choices[0].message.content and answer.choices[0].message.audio is None
    assert output[2]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    stats = server.stats()
    assert stats["batches"]["lines_ok"] == 3 and stats["counts"] == {"requests": 0, "ok": 0}


def test_failing_lines_land_in_the_error_file_and_the_others_complete(server: RunningServer) -> None:
    """Each line draws from the fault plan as a request would: with 500=0.5 and this seed the draws are known."""
    client = _client(server)
    seed, probability = 7, 0.5
    audio_model = {"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": DOCUMENT}]}
    lines = [_line(f"line-{i}") for i in range(6)] + [_line("bad-body", {"model": "gpt-4o-mini"}),
                                                      _line("audio-model", audio_model)]
    draws = random.Random(seed)
    faulted = {line["custom_id"] for line in lines if draws.random() < probability}
    expected_failed = faulted | {"bad-body", "audio-model"}
    assert 0 < len(faulted & {f"line-{i}" for i in range(6)}) < 6  # the seed makes some, not all, fail
    file_id = _upload(client, lines)
    root, auth = server.base_url.removesuffix("/v1"), {"Authorization": f"Bearer {server.key}"}
    httpx.post(root + "/faults", json={"faults": f"500={probability}", "seed": seed}, headers=auth,
               timeout=10).raise_for_status()
    try:
        created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        batch = _finished(client, created.id)
    finally:
        server.set_faults("")
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (8 - len(expected_failed),
                                                                              len(expected_failed))
    output, errors = _file_lines(client, batch.output_file_id), _file_lines(client, batch.error_file_id)
    assert {line["custom_id"] for line in output} == {line["custom_id"] for line in lines} - expected_failed
    assert {line["custom_id"] for line in errors} == expected_failed
    for line in errors:
        status = line["response"]["status_code"]
        assert status == (500 if line["custom_id"] in faulted else 400)
        ErrorObject.model_validate(line["response"]["body"]["error"], strict=True)
    by_id = {line["custom_id"]: line for line in errors}
    if "audio-model" not in faulted:
        assert by_id["audio-model"]["response"]["body"]["error"]["param"] == "model"


def test_batch_takes_only_chat_completions_and_its_window(server: RunningServer) -> None:
    client = _client(server)
    file_id = _upload(client, [_line("a")])
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=file_id, endpoint="/v1/audio/speech",  # type: ignore[arg-type]
                              completion_window="24h")
    assert _error_of(caught).param == "endpoint"
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                              completion_window="1h")  # type: ignore[arg-type]
    assert _error_of(caught).param == "completion_window"
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")
    assert _error_of(caught).param == "input_file_id"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_batches_are_listed_newest_first_a_page_at_a_time(server: RunningServer) -> None:
    client = _client(server)
    file_id = _upload(client, [_line("a")])
    made = [client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                  completion_window="24h").id for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    second = client.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == made[0]
    for batch_id in made:
        _finished(client, batch_id)


def test_a_cancelled_batch_runs_no_line(slow_server: RunningServer) -> None:
    client = _client(slow_server)
    file_id = _upload(client, [_line("a"), _line("b")])
    created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
    batch = _finished(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None and batch.output_file_id is None
    assert batch.request_counts is not None and (batch.request_counts.completed, batch.request_counts.failed) == (0, 2)
    errors = _file_lines(client, batch.error_file_id)
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [
        ("a", None, "batch_cancelled"), ("b", None, "batch_cancelled")]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(created.id)


def test_a_batch_past_its_window_expires(slow_server: RunningServer) -> None:
    client = _client(slow_server)
    created = client.batches.create(input_file_id=_upload(client, [_line("a")]),
                                    endpoint="/v1/chat/completions", completion_window="24h")
    assert created.expires_at is not None and created.expires_at - created.created_at == 2  # 1.5 s, rounded up
    batch = _finished(client, created.id)
    assert batch.status == "expired" and batch.expired_at is not None and batch.output_file_id is None
    assert batch.request_counts is not None and batch.request_counts.failed == 1
    assert [e["error"]["code"] for e in _file_lines(client, batch.error_file_id)] == ["batch_expired"]
