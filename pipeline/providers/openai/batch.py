"""The Batch API's wire format (`/files` with purpose `batch`, `/batches`): a document as one JSONL line for the text
step of two-step, the file upload, the batch's create/retrieve/find, and its output and error files read line by line.

Knows bodies and HTTP through the provider's client (its timeouts, error classes and retry policy); never reads or
writes state. Every string from the server passes redact.from_server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import httpx

from pipeline.errors import TransientError
from pipeline.models import Document, RunSettings, Usage
from pipeline.providers.openai import server_json
from pipeline.providers.openai.shapes import BATCH_COUNTS, BATCH_STATUSES, api_id, in_path
from pipeline.providers.openai.usage import counts_of, usage_of
from pipeline.redact import from_server, well_formed, without_secrets

CHAT_ENDPOINT = "/v1/chat/completions"  # the only endpoint audiosum batches (the Batch API takes no audio models)
COMPLETION_WINDOW = "24h"
# Lines per batch: the API takes 50,000, audiosum sends at most this many so that a batch's output file (a few KB a
# line) is read whole in a few MB; a run with more documents submits several batches.
MAX_LINES = 2_000
MAX_FILE_BYTES = 190 * 1024 * 1024  # under the API's 200 MB limit of an input file
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # an output file bigger than this is not 2,000 summaries
MAX_LINE_BYTES = 1024 * 1024  # one line holds one summary (a few KB): a longer one is skipped, never held whole
PARSE_GROUP_BYTES = 1024 * 1024  # lines are parsed off the event loop in groups of about this size
SLICE_BYTES = 64 * 1024  # what arrives is cut into slices of this size before it is split into lines
_OURS_MARK = b'"custom_id"'  # a line without it cannot name one of our documents: skipped unparsed
MAX_LISTED = 1000  # batches scanned to find one created from a given file (a run killed before recording it)
MAX_OBJECT_BYTES = 4 * 1024 * 1024  # a Batch, a File or a page of 100 of them: a few hundred KB at most
T = TypeVar("T")


def batch_line(document: Document, settings: RunSettings, messages: list[dict[str, Any]]) -> bytes:
    """One request of the input file: the text model writes the document's spoken summary (custom_id = its id)."""
    line = {"custom_id": document.id, "method": "POST", "url": CHAT_ENDPOINT,
            "body": {"model": settings.text_model, "messages": messages}}
    return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """One line of a batch's output or error file: the written text, or why there is none."""

    custom_id: str
    text: str | None
    usage: Usage
    request_id: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class BatchState:
    """What GET /batches/{id} says, checked against the API's shapes: an id, one of Batch.status's values, the
    counts BatchRequestCounts defines."""

    batch_id: str
    status: str
    counts: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    input_file_id: str | None


class BatchApi:
    """Batch API calls over an OpenAIProvider's client, each retried by its policy like any request."""

    def __init__(self, request: Callable[..., Awaitable[httpx.Response]],
                 retried: Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]], secret: str | None) -> None:
        self._request = request
        self._retried = retried
        self._secret = secret

    async def _json(self, method: str, path: str, label: str, **options: Any) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            response = await self._request(method, path, max_bytes=MAX_OBJECT_BYTES, **options)
            try:
                body = server_json.parse(response.content)
            except ValueError as exc:  # not JSON, or nested past the limit
                raise TransientError(f"broken answer: {path} sent no JSON", status=response.status_code,
                                     cause="broken_answer") from exc
            if not isinstance(body, dict):
                raise TransientError(f"broken answer: {path} sent no object", cause="broken_answer")
            return body

        result: dict[str, Any] = await self._retried(once, label)
        return result

    async def upload(self, handle: IO[bytes], name: str) -> str:
        """POST /files (purpose batch): the file id."""
        def rewound() -> dict[str, Any]:
            handle.seek(0)
            return {"files": {"file": (name, handle, "application/jsonl")}, "data": {"purpose": "batch"}}

        async def once() -> dict[str, Any]:
            return await self._json("POST", "files", "batch upload", **rewound())

        body: dict[str, Any] = await once()
        return self._id(body, "file")

    async def create(self, file_id: str, metadata: dict[str, str]) -> BatchState:
        body = await self._json("POST", "batches", "batch create", json={
            "input_file_id": file_id, "endpoint": CHAT_ENDPOINT, "completion_window": COMPLETION_WINDOW,
            "metadata": metadata})
        return self._state(body)

    async def retrieve(self, batch_id: str) -> BatchState:
        return self._state(await self._json("GET", f"batches/{in_path(batch_id)}", "batch poll"))

    async def cancel(self, batch_id: str) -> BatchState:
        return self._state(await self._json("POST", f"batches/{in_path(batch_id)}/cancel", "batch cancel"))

    async def created_from(self, file_id: str) -> BatchState | None:
        """The batch made from this input file, if one was (a run killed between create and recording it)."""
        after: str | None = None
        seen = 0
        while seen < MAX_LISTED:
            params = {"limit": 100, **({"after": after} if after else {})}
            body = await self._json("GET", "batches", "batch list", params=params)
            listed = body.get("data")
            data: list[Any] = listed if isinstance(listed, list) else []
            for item in data:
                if isinstance(item, dict) and item.get("input_file_id") == file_id:
                    return self._state(item)
            seen += len(data)
            last = data[-1].get("id") if data and isinstance(data[-1], dict) else None
            if not body.get("has_more") or api_id(last) is None:
                return None
            after = last
        return None

    async def delete_file(self, file_id: str) -> None:
        await self._json("DELETE", f"files/{in_path(file_id)}", "batch file delete")

    async def read_outcomes(self, file_id: str, wanted: Collection[str],
                            deliver: Callable[[LineOutcome], None]) -> None:
        """Each line of an output or error file whose custom_id is in `wanted`, delivered as it is read: the file
        streams through (capped at MAX_OUTPUT_BYTES), memory bounded by one line and one parse group, lines parsed
        off the event loop. A retried read delivers again only what `wanted` still holds."""
        async def once() -> None:
            reader = _LineReader(self._outcome, wanted, deliver)
            # identity: a compressed file would decode into chunks far bigger than one line (the cap counts
            # decoded bytes, and feed() cuts what arrives into slices either way).
            await self._request("GET", f"files/{in_path(file_id)}/content", max_bytes=MAX_OUTPUT_BYTES,
                                sink=reader.feed, headers={"Accept-Encoding": "identity"})
            await reader.close()

        await self._retried(once, "batch output")

    def _outcome(self, raw: bytes) -> LineOutcome:
        try:
            line = server_json.parse(raw)
        except ValueError:
            return LineOutcome("", None, Usage(), None, "an output line that is not JSON")
        custom_id = str(line.get("custom_id") or "") if isinstance(line, dict) else ""
        response = line.get("response") if isinstance(line, dict) else None
        error = line.get("error") if isinstance(line, dict) else None
        if isinstance(response, dict) and response.get("status_code") == 200 and isinstance(response.get("body"),
                                                                                            dict):
            body = response["body"]
            request_id = from_server(str(response.get("request_id") or ""), self._secret) or None
            try:
                text = body["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                text = None
            if isinstance(text, str) and text.strip() and well_formed(text):
                return LineOutcome(custom_id, without_secrets(text, self._secret).strip(),
                                   usage_of(body.get("usage")), request_id, None)
            return LineOutcome(custom_id, None, Usage(), request_id, "the answer has no text")
        if isinstance(response, dict) and isinstance(response.get("body"), dict):
            error = response["body"].get("error") or error
            status = response.get("status_code")
            detail = error.get("message") if isinstance(error, dict) else None
            return LineOutcome(custom_id, None, Usage(), None,
                               from_server(f"HTTP {status}: {detail or 'no message'}", self._secret, limit=300))
        detail = error.get("message") if isinstance(error, dict) else str(error or "no answer")
        return LineOutcome(custom_id, None, Usage(), None, from_server(str(detail), self._secret, limit=300))

    def _id(self, body: dict[str, Any], kind: str) -> str:
        value = api_id(body.get("id"))
        if value is None or value != from_server(value, self._secret):
            raise TransientError(f"broken answer: the {kind} has no usable id", cause="broken_answer")
        return value

    def _state(self, body: dict[str, Any]) -> BatchState:
        status = body.get("status")
        if status not in BATCH_STATUSES:
            shown = from_server(status, self._secret, limit=40) if isinstance(status, str) else type(status).__name__
            raise TransientError(f"broken answer: the batch status {shown} is not one the API defines",
                                 cause="broken_answer")

        def file_id(name: str) -> str | None:
            value = api_id(body.get(name))
            return value if value is not None and value == from_server(value, self._secret) else None

        return BatchState(batch_id=self._id(body, "batch"), status=str(status),
                          counts=counts_of(body.get("request_counts"), BATCH_COUNTS),
                          output_file_id=file_id("output_file_id"), error_file_id=file_id("error_file_id"),
                          input_file_id=file_id("input_file_id"))


class _LineReader:
    """An output file's bytes as they arrive, cut into lines: a line without `"custom_id"` or longer than
    MAX_LINE_BYTES is dropped unparsed; the rest are parsed in groups in a thread and the wanted ones delivered."""

    def __init__(self, parse: Callable[[bytes], LineOutcome], wanted: Collection[str],
                 deliver: Callable[[LineOutcome], None]) -> None:
        self._parse = parse
        self._wanted = wanted
        self._deliver = deliver
        self._partial = bytearray()
        self._overlong = False  # the line being read went past MAX_LINE_BYTES: its rest is dropped
        self._group: list[bytes] = []
        self._group_bytes = 0

    async def feed(self, chunk: bytes) -> None:
        # A decoded chunk can be far larger than what arrived (a compressed answer): taken a slice at a time, so a
        # parse group never holds more than about PARSE_GROUP_BYTES.
        for start in range(0, len(chunk), SLICE_BYTES):
            await self._feed(chunk[start:start + SLICE_BYTES])

    async def _feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self._extend(chunk)
            return
        self._extend(chunk[:first])
        self._end_line()
        last = chunk.rfind(b"\n")
        # The lines between the first and last newline lie whole in this chunk: only when one of them can be ours
        # are they cut apart (a flood of other lines costs two searches a chunk, not an object a line).
        if last > first and _OURS_MARK in (middle := chunk[first + 1:last]):
            whole = [p for p in middle.split(b"\n") if _OURS_MARK in p and len(p) <= MAX_LINE_BYTES]
            self._group += whole
            self._group_bytes += sum(map(len, whole))
        self._extend(chunk[last + 1:])
        if self._group_bytes >= PARSE_GROUP_BYTES:
            await self._flush()

    async def close(self) -> None:
        self._end_line()
        await self._flush()

    def _extend(self, piece: bytes) -> None:
        if self._overlong:
            return
        if len(self._partial) + len(piece) > MAX_LINE_BYTES:
            self._partial.clear()
            self._overlong = True
            return
        self._partial += piece

    def _end_line(self) -> None:
        if not self._overlong and _OURS_MARK in self._partial:
            self._group.append(bytes(self._partial))
            self._group_bytes += len(self._partial)
        self._partial.clear()
        self._overlong = False

    async def _flush(self) -> None:
        lines, self._group, self._group_bytes = self._group, [], 0
        if lines:
            for outcome in await asyncio.to_thread(lambda: [self._parse(line) for line in lines]):
                if outcome.custom_id in self._wanted:
                    self._deliver(outcome)



