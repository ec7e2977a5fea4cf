"""What `audiosum serve` holds for a batch (finding 6 of the hostile review): no parsed copy of its input file, at most
50,000 requests a file, no line nested past the JSON depth limit, and the bytes of an input file deleted under a
running batch still counted against the store.

In process (the app behind httpx's ASGI transport), so that tracemalloc sees what the server keeps; the worker pool is
never started, and the lines that run here fail (a body that is not an object) before they would need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx

from pipeline.serve.app import ChatServer, ServerConfig, create_app
from pipeline.serve.batches import BatchSettings

KEY = "sk-test-batch-memory-0123456789"
TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_REQUESTS = 50_000  # the Batch API's cap on one input file, as OpenAI documents it
DEPTH_LIMIT = 64       # serve's documented nesting limit for client JSON


def _line(custom_id: str, body: Any) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body},
                      separators=(",", ":")).encode() + b"\n"


def _empty_lists_line(custom_id: str, count: int) -> bytes:
    """A request whose body is `[[],[],…]`: three bytes of file per Python list once parsed."""
    return _line(custom_id, [[] for _ in range(count)])


@contextlib.asynccontextmanager
async def _serving(delay_s: float = 600.0) -> AsyncIterator[tuple[httpx.AsyncClient, ChatServer]]:
    app = create_app(ServerConfig(engine="tone", api_key=KEY, batches=BatchSettings(delay_s=delay_s)))
    chat: ChatServer = app.state.chat
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        try:
            yield client, chat
        finally:
            chat.batches.shutdown()


async def _upload(client: httpx.AsyncClient, data: bytes) -> httpx.Response:
    return await client.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})


async def _create(client: httpx.AsyncClient, file_id: str) -> httpx.Response:
    return await client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                  "completion_window": "24h"})


async def _finished(client: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # guards against a hang only
    while True:
        batch = (await client.get(f"/v1/batches/{batch_id}")).json()
        if batch["status"] in TERMINAL or time.monotonic() > deadline:
            return batch
        await asyncio.sleep(0.01)


def _error(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_batches_from_one_stored_file_hold_no_copy_of_its_lines() -> None:
    # 1 MB of `[[],[],…]` bodies parses to ~350,000 lists (~25 MB); a batch that kept them would hold that each.
    data = b"".join(_empty_lists_line(f"r{i}", 20_000) for i in range(16))

    async def held_by_four_batches() -> int:
        async with _serving() as (client, _):
            upload = await _upload(client, data)
            assert upload.status_code == 200, upload.text
            file_id = upload.json()["id"]
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(4):
                    created = await _create(client, file_id)
                    assert created.status_code == 200 and created.json()["request_counts"]["total"] == 16
                return tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()

    per_batch = asyncio.run(held_by_four_batches()) / 4
    assert per_batch < len(data) / 16, f"{per_batch / 1024:.0f} KB held per batch of a {len(data) // 1024} KB file"


def test_a_file_of_more_than_50000_requests_is_refused_at_upload_and_at_create() -> None:
    tiny = [_line(f"r{i}", {}) for i in range(MAX_REQUESTS + 1)]

    async def go() -> None:
        async with _serving() as (client, chat):
            refused = await _upload(client, b"".join(tiny))
            error = _error(refused)
            assert refused.status_code == 400 and (error["param"], error["code"]) == ("file", "invalid_batch_file")
            assert f"line {MAX_REQUESTS + 1}" in error["message"]
            # Stored without the upload's check (as a file that reached the store some other way): create checks too.
            over = chat.files.store.add("over.jsonl", "batch", b"".join(tiny))
            refused = await _create(client, over.id)
            error = _error(refused)
            assert refused.status_code == 400
            assert (error["param"], error["code"]) == ("input_file_id", "invalid_batch_file")
            at_cap = chat.files.store.add("cap.jsonl", "batch", b"\n\n".join(tiny[:MAX_REQUESTS]))
            created = await _create(client, at_cap.id)
            assert created.status_code == 200 and created.json()["request_counts"]["total"] == MAX_REQUESTS

    asyncio.run(go())


def test_json_nested_past_the_depth_limit_is_refused_without_recursing() -> None:
    def nested(depth: int) -> bytes:
        return b"[" * depth + b"]" * depth

    envelope = b'{"custom_id":"deep","method":"POST","url":"/v1/chat/completions","body":%s}\n'

    async def go() -> None:
        async with _serving(delay_s=0) as (client, chat):
            for line in (b"[" * 200_000 + b"\n", envelope % nested(200_000), envelope % nested(DEPTH_LIMIT + 1)):
                refused = await _upload(client, line)
                error = _error(refused)
                assert refused.status_code == 400 and error["code"] == "invalid_batch_file", refused.text
                assert "line 1" in error["message"]
            accepted = await _upload(client, envelope % nested(DEPTH_LIMIT - 1))  # the body is one level down
            assert accepted.status_code == 200, accepted.text
            # A chat request nested 200,000 deep, and one just past the limit, are plain 400s.
            for depth in (200_000, DEPTH_LIMIT):
                body = b'{"model":"gpt-4o-mini","x":%s}' % nested(depth)
                answer = await client.post("/v1/chat/completions", content=body,
                                           headers={"Content-Type": "application/json"})
                assert answer.status_code == 400 and _error(answer)["code"] == "invalid_value", answer.text
            # Files that reached the store unchecked: a deep first line is refused at create; a deep later line
            # fails the batch when it is reached, naming its line.
            first = chat.files.store.add("first.jsonl", "batch", b"[" * 200_000 + b"\n")
            assert (await _create(client, first.id)).status_code == 400
            later = chat.files.store.add("later.jsonl", "batch", _line("a", "not an object") + b"[" * 200_000)
            created = await _create(client, later.id)
            assert created.status_code == 200, created.text
            batch = await _finished(client, created.json()["id"])
            assert batch["status"] == "failed" and "line 2" in batch["errors"]["data"][0]["message"]

    asyncio.run(go())


def test_an_input_file_deleted_under_a_running_batch_stays_counted_until_it_ends() -> None:
    data = b"".join(_line(f"r{i}", "not an object") for i in range(20))

    async def go() -> None:
        async with _serving() as (client, chat):
            file_id = (await _upload(client, data)).json()["id"]
            batch_id = (await _create(client, file_id)).json()["id"]
            assert (await client.delete(f"/v1/files/{file_id}")).status_code == 200
            counts = chat.files.store.counts()
            assert (counts["files"], counts["bytes"]) == (0, len(data))  # gone from the list, still in memory
            assert (await client.post(f"/v1/batches/{batch_id}/cancel")).status_code == 200
            assert (await _finished(client, batch_id))["status"] == "cancelled"
            listed = (await client.get("/v1/files")).json()["data"]
            assert chat.files.store.counts()["bytes"] == sum(f["bytes"] for f in listed)  # only its error file

    asyncio.run(go())


def test_a_batch_whose_answers_outgrow_one_file_fails_instead_of_holding_them() -> None:
    data = b"".join(_line(f"r{i}", "not an object") for i in range(200))

    async def go() -> None:
        async with _serving(delay_s=0) as (client, chat):
            file_id = (await _upload(client, data)).json()["id"]
            chat.files.store.max_file_bytes = 4096  # a few failed lines' worth of error file
            batch = await _finished(client, (await _create(client, file_id)).json()["id"])
            assert batch["status"] == "failed" and batch["errors"]["data"][0]["code"] == "file_too_large"
            assert batch["request_counts"]["failed"] < 200  # it stopped at the cap, not after every line

    asyncio.run(go())
