"""`/v1/files` for `audiosum serve`: upload (multipart), retrieve, content, delete and list, kept in memory.

Bounded: a cap per file (413) and on all files together, in bytes and in count (400 `storage_limit_exceeded`; delete
files to make room); a file a running batch reads stays counted until it lets go, even once deleted. A `batch` upload
must be Batch API JSONL for /v1/chat/completions, checked a line at a time. Knows nothing of batches' progress;
batches.py reads input files (a line when it runs) and stores output files here.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve import client_json
from pipeline.serve.core import ServerCore
from pipeline.serve.errors import ApiFailure, json_response, quoted, request_id

MB = 1024 * 1024
MAX_FILE_BYTES = 16 * MB
MAX_TOTAL_BYTES = 64 * MB
MAX_FILES = 1000
MAX_BATCH_LINES = 50_000  # requests in one input file, as the Batch API allows
UPLOAD_PURPOSES = ("batch", "user_data")
BATCH_URL = "/v1/chat/completions"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_FIELD = re.compile(rb'\b(name|filename)="([^"]*)"', re.IGNORECASE)
# A request line's text from its first byte that is not blank: blank lines never match, and the scan between two
# matches runs in C, so a file of a million empty lines costs no Python step per line.
_REQUEST_LINE = re.compile(rb"\S[^\n]*")


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        """The OpenAIFile object."""
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request line of a Batch input file, parsed when it is checked or run and dropped after."""

    custom_id: str
    body: Any  # checked as a chat request only when the line runs: an invalid body fails that line alone


class FileStore:
    """Files by id, oldest first, within the byte and count caps. A file being read (`hold`) that is deleted leaves
    the listing at once, but its bytes stay counted until its last reader lets go (`release`): they are still in
    memory, so deleting an input file cannot make room for more."""

    def __init__(self, max_file_bytes: int = MAX_FILE_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_files: int = MAX_FILES) -> None:
        self.max_file_bytes, self.max_total_bytes, self.max_files = max_file_bytes, max_total_bytes, max_files
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._readers: Counter[str] = Counter()
        self._deleted_while_read: dict[str, int] = {}  # file id -> its bytes, still counted in total_bytes
        self.total_bytes = 0

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        if len(data) > self.max_file_bytes:
            raise ApiFailure(413, f"The file is {len(data)} bytes; this server stores files of at most "
                             f"{self.max_file_bytes} bytes.", param="file", code="file_too_large")
        if self.total_bytes + len(data) > self.max_total_bytes or len(self._files) >= self.max_files:
            raise ApiFailure(400, f"This server's file storage is full ({len(self._files)} files, {self.total_bytes} "
                             f"bytes; at most {self.max_files} files and {self.max_total_bytes} bytes): delete "
                             "files to make room.", param="file", code="storage_limit_exceeded")
        stored = StoredFile("file-" + secrets.token_hex(12), filename, purpose, data, int(time.time()))
        self._files[stored.id] = stored
        self.total_bytes += len(data)
        return stored

    def get(self, file_id: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None:
            raise ApiFailure(404, f"No such File object: {quoted(file_id)}", param="id")
        return stored

    def delete(self, file_id: str) -> None:
        stored = self.get(file_id)
        del self._files[file_id]
        if self._readers[file_id]:
            self._deleted_while_read[file_id] = len(stored.data)
        else:
            self.total_bytes -= len(stored.data)

    def hold(self, file_id: str) -> StoredFile:
        """The file, for a reader that will `release` it when done."""
        stored = self.get(file_id)
        self._readers[file_id] += 1
        return stored

    def release(self, file_id: str) -> None:
        self._readers[file_id] -= 1
        if self._readers[file_id] <= 0:
            del self._readers[file_id]
            self.total_bytes -= self._deleted_while_read.pop(file_id, 0)

    def listed(self) -> list[StoredFile]:
        return list(self._files.values())

    def counts(self) -> dict[str, int]:
        return {"files": len(self._files), "bytes": self.total_bytes}


class FilesEndpoint:
    """The routes; counted in /stats "files" (requests, ok, error_<status>)."""

    def __init__(self, core: ServerCore, store: FileStore) -> None:
        self.core = core
        self.store = store
        self.stats: Counter[str] = Counter({"requests": 0, "ok": 0})

    async def _answer(self, request: Request, work: Callable[[Request], Awaitable[Response]]) -> Response:
        self.stats["requests"] += 1
        try:
            self.core.check_auth(request)
            await self.core.record(request, await request.body())  # every request, as for chat and models
            response: Response = await work(request)
        except ApiFailure as failure:
            self.stats[failure.kind] += 1
            return failure.response()
        self.stats["ok"] += 1
        return response

    async def create(self, request: Request) -> Response:
        return await self._answer(request, self._create)

    async def retrieve(self, request: Request) -> Response:
        return await self._answer(request, self._retrieve)

    async def content(self, request: Request) -> Response:
        return await self._answer(request, self._content)

    async def delete(self, request: Request) -> Response:
        return await self._answer(request, self._delete)

    async def list_files(self, request: Request) -> Response:
        return await self._answer(request, self._list)

    async def _create(self, request: Request) -> Response:
        raw = await request.body()
        fields = await asyncio.to_thread(parse_multipart, raw, request.headers.get("content-type", ""))
        purpose = _purpose(fields)
        filename, data = _file_field(fields)
        if purpose == "batch":
            await asyncio.to_thread(check_batch_file, data)
        return _ok(self.store.add(filename, purpose, data).object())

    async def _retrieve(self, request: Request) -> Response:
        return _ok(self.store.get(request.path_params["file_id"]).object())

    async def _content(self, request: Request) -> Response:
        stored = self.store.get(request.path_params["file_id"])
        return Response(stored.data, media_type="application/octet-stream", headers={"x-request-id": request_id()})

    async def _delete(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        self.store.delete(file_id)
        return _ok({"id": file_id, "object": "file", "deleted": True})

    async def _list(self, request: Request) -> Response:
        query = request.query_params
        files = self.store.listed()
        if query.get("order", "desc") == "desc":
            files.reverse()
        purpose = query.get("purpose")
        if purpose:
            files = [f for f in files if f.purpose == purpose]
        return _ok(page([f.object() for f in files], query.get("after"), query.get("limit"), 10_000))


def page(objects: list[dict[str, Any]], after: str | None, limit: str | None, most: int) -> dict[str, Any]:
    """A cursor page of `objects` (already in order): those after the id `after`, at most `limit`."""
    try:
        count = int(limit) if limit is not None else min(most, 10_000)
    except ValueError:
        raise ApiFailure(400, f"Invalid value for 'limit': {quoted(limit)}.", param="limit",
                         code="invalid_value") from None
    if not 1 <= count <= most:
        raise ApiFailure(400, f"Invalid value for 'limit': {count}; it must be between 1 and {most}.",
                         param="limit", code="invalid_value")
    if after:
        ids = [o["id"] for o in objects]
        objects = objects[ids.index(after) + 1:] if after in ids else []
    shown = objects[:count]
    return {"object": "list", "data": shown, "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None, "has_more": len(objects) > count}


def _ok(body: dict[str, Any]) -> Response:
    return json_response(body, headers={"x-request-id": request_id()})


def _purpose(fields: dict[str, tuple[str | None, bytes]]) -> str:
    given = fields.get("purpose")
    purpose = given[1].decode("utf-8", "replace") if given is not None and given[0] is None else None
    if purpose not in UPLOAD_PURPOSES:
        raise ApiFailure(400, f"Invalid value for 'purpose': {quoted(purpose)}; this server takes "
                         + ", ".join(repr(p) for p in UPLOAD_PURPOSES) + ".", param="purpose",
                         code="invalid_value")
    return purpose


def _file_field(fields: dict[str, tuple[str | None, bytes]]) -> tuple[str, bytes]:
    given = fields.get("file")
    if given is None or given[0] is None:
        raise ApiFailure(400, "'file' is required: send it as a multipart file field.", param="file")
    return given[0] or "upload", given[1]


def parse_multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data → name: (filename or None for a plain field, bytes). Runs in a thread."""
    found = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or found is None:
        raise ApiFailure(400, "POST /v1/files takes multipart/form-data with a boundary.", param="file")
    delimiter = b"--" + found.group(1).encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ApiFailure(400, "A multipart part has no header/body separator.", param="file")
        params = {key.lower(): value for key, value in _DISPOSITION_FIELD.findall(head)}
        name = params.get(b"name")
        if name is not None:
            filename = params.get(b"filename")
            fields[name.decode("utf-8", "replace")] = (
                filename.decode("utf-8", "replace") if filename is not None else None, content.removesuffix(b"\r\n"))
    return fields


def request_lines(data: bytes, param: str = "file") -> Iterator[tuple[int, bytes]]:
    """A Batch input file's request lines as (number, bytes), one at a time, blank lines skipped (and not numbered).
    The line past MAX_BATCH_LINES is the 400 the whole file gets; `param` names where the file was given."""
    for number, match in enumerate(_REQUEST_LINE.finditer(data), 1):
        if number > MAX_BATCH_LINES:
            raise _line_error(number, f"a batch holds at most {MAX_BATCH_LINES} requests", param)
        yield number, match.group()


def batch_line(number: int, line: bytes, param: str = "file") -> BatchLine:
    """One request line, parsed within client_json's bounds and checked, or the 400 that says what is wrong with it
    (all but the uniqueness of its custom_id, which takes the lines before it)."""
    try:
        item = client_json.loads(line)
    except client_json.RefusedJson as refused:
        raise _line_error(number, refused.why, param) from refused
    if not isinstance(item, dict):
        raise _line_error(number, "it is not a JSON object", param)
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _line_error(number, "'custom_id' must be a non-empty string", param)
    if item.get("method") != "POST":
        raise _line_error(number, "'method' must be 'POST'", param)
    if item.get("url") != BATCH_URL:
        raise _line_error(number, f"'url' must be {BATCH_URL!r}, not {quoted(item.get('url'))}", param)
    if "body" not in item:
        raise _line_error(number, "'body' is required", param)
    return BatchLine(custom_id, item["body"])


def check_batch_file(data: bytes) -> int:
    """How many requests a Batch input file holds, or the 400 that says which line is wrong and why. Each line is
    parsed, checked and dropped in turn, so what the whole file would parse to is never held. Runs in a thread."""
    for _ in request_lines(data):
        pass  # counted first, without parsing: a file over MAX_BATCH_LINES is refused before any line is parsed
    seen: set[str] = set()
    for number, line in request_lines(data):
        custom_id = batch_line(number, line).custom_id
        if custom_id in seen:
            raise _line_error(number, f"'custom_id' {quoted(custom_id)} is used by an earlier line")
        seen.add(custom_id)
    if not seen:
        raise _line_error(0, "the file has no requests")
    return len(seen)


def _line_error(number: int, why: str, param: str = "file") -> ApiFailure:
    where = f"line {number}" if number else "the file"
    return ApiFailure(400, f"Invalid batch input file at {where}: {why}. Each line must be a JSON object with "
                      f"'custom_id' (unique), 'method' 'POST', 'url' '{BATCH_URL}' and 'body'.", param=param,
                      code="invalid_batch_file")
