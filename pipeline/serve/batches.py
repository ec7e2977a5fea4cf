"""`/v1/batches` for `audiosum serve`: create, retrieve, list and cancel Batch jobs over an uploaded JSONL file.

A batch is `validating` for half of `--batch-delay`, `in_progress` for the other half, then its lines run one at a
time through the chat answering (text only; the work itself in the worker pool), each drawing from the fault plan
as a request would; then `finalizing` → `completed` with an output file and an error file. Cancelling stops it
between lines (`cancelling` → `cancelled`); with `--batch-expire SECONDS` a batch not finished that long after its
creation ends `expired`. Lines that never ran are in the error file with code `batch_cancelled` / `batch_expired`.
At most MAX_BATCHES are remembered (the oldest finished are forgotten) and MAX_ACTIVE_BATCHES run at once.

A running batch holds no copy of its input: it reads the stored file's bytes a line at a time, parsing each line only
when it runs, and keeps its answers as the JSONL bytes its files will hold (failing the batch past the store's file
cap), so what 32 batches hold stays within the file caps. It never changes a stored file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.serve import work as server_work
from pipeline.serve.core import ServerCore
from pipeline.serve.errors import (
    MAX_QUOTED,
    SERVER_ERROR_MESSAGE,
    STATUS_ERRORS,
    ApiFailure,
    json_response,
    quoted,
    request_id,
)
from pipeline.serve.files import BATCH_URL, BatchLine, FileStore, batch_line, page, request_lines

MAX_BATCHES = 1000
MAX_ACTIVE_BATCHES = 32
WINDOW = "24h"
WINDOW_S = 24 * 3600
MAX_METADATA = 16
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_POOL_FULL_WAIT_S = 0.05
_POOL_FULL_TRIES = 200


@dataclass(frozen=True, slots=True)
class BatchSettings:
    delay_s: float = 1.0          # validating for half of it, in_progress (before the lines run) the other half
    expire_s: float = 0.0         # a batch not finished this long after creation expires; 0: the 24 h window only


@dataclass(slots=True)
class BatchJob:
    id: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: int
    expires_at: int
    model: str | None
    status: str = "validating"
    times: dict[str, int] = field(default_factory=dict)   # in_progress_at, completed_at, ...
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None                       # "cancelled" or "expired"

    def object(self) -> dict[str, Any]:
        """The Batch object."""
        return {"id": self.id, "object": "batch", "endpoint": BATCH_URL, "errors": self.errors,
                "input_file_id": self.input_file_id, "completion_window": WINDOW, "status": self.status,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.created_at, "expires_at": self.expires_at, "metadata": self.metadata,
                "model": self.model, "request_counts": dict(self.counts),
                **{name: self.times.get(name) for name in ("in_progress_at", "finalizing_at", "completed_at",
                                                           "failed_at", "expired_at", "cancelling_at",
                                                           "cancelled_at")}}

    def enter(self, status: str) -> None:
        self.status = status
        self.times[f"{status}_at"] = int(time.time())


class BatchesEndpoint:
    """The routes and the running batches; counted in /stats "batches" (requests, ok, error_<status>, and
    lines_ok / lines_failed for the lines run)."""

    def __init__(self, core: ServerCore, store: FileStore, settings: BatchSettings) -> None:
        self.core, self.store, self.settings = core, store, settings
        self.jobs: OrderedDict[str, BatchJob] = OrderedDict()
        self.stats: Counter[str] = Counter({"requests": 0, "ok": 0})
        self._tasks: set[asyncio.Task[None]] = set()

    async def _answer(self, request: Request, work: Callable[[Request], Awaitable[dict[str, Any]]]) -> Response:
        self.stats["requests"] += 1
        try:
            self.core.check_auth(request)
            await self.core.record(request, await request.body())  # every request, as for chat and models
            body = await work(request)
        except ApiFailure as failure:
            self.stats[failure.kind] += 1
            return failure.response()
        self.stats["ok"] += 1
        return json_response(body, headers={"x-request-id": request_id()})

    async def create(self, request: Request) -> Response:
        return await self._answer(request, self._create)

    async def retrieve(self, request: Request) -> Response:
        return await self._answer(request, self._retrieve)

    async def cancel(self, request: Request) -> Response:
        return await self._answer(request, self._cancel)

    async def list_batches(self, request: Request) -> Response:
        return await self._answer(request, self._list)

    def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()

    # -- the routes' work ---------------------------------------------------------------------------------------
    async def _create(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = await self.core.json_body(raw)
        _check_endpoint(body.get("endpoint"))
        if body.get("completion_window") != WINDOW:
            raise ApiFailure(400, f"Invalid value for 'completion_window': {quoted(body.get('completion_window'))};"
                             f" the only window is {WINDOW!r}.", param="completion_window", code="invalid_value")
        metadata = _metadata(body.get("metadata"))
        stored = self.store.hold(self._input_file(body.get("input_file_id")))  # let go when its batch ends
        try:
            total, model = await asyncio.to_thread(_survey, stored.data)
            self._make_room()  # after the last await: batches created at once cannot all pass it
        except BaseException:
            self.store.release(stored.id)
            raise
        job = self._new_job(stored.id, metadata, total, model)
        task = asyncio.get_running_loop().create_task(self._run(job, stored.data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.object()

    def _input_file(self, file_id: Any) -> str:
        if not isinstance(file_id, str) or not file_id:
            raise ApiFailure(400, "'input_file_id' is required.", param="input_file_id")
        try:
            stored = self.store.get(file_id)
        except ApiFailure:
            raise ApiFailure(400, f"No such File object: {quoted(file_id)}.", param="input_file_id",
                             code="invalid_value") from None
        if stored.purpose != "batch":
            raise ApiFailure(400, f"File {file_id} has purpose {stored.purpose!r}; a batch's input file must have "
                             "purpose 'batch'.", param="input_file_id", code="invalid_value")
        return file_id

    def _make_room(self) -> None:
        active = sum(job.status not in TERMINAL for job in self.jobs.values())
        if active >= MAX_ACTIVE_BATCHES:
            raise ApiFailure(429, f"{active} batches are running on this server, the most it runs at once; retry "
                             "when one has finished.", code="batch_limit_exceeded", error_type="requests")
        for job_id in [j.id for j in self.jobs.values() if j.status in TERMINAL]:
            if len(self.jobs) < MAX_BATCHES:
                break
            del self.jobs[job_id]

    def _new_job(self, input_file_id: str, metadata: dict[str, str] | None, total: int, model: str | None) -> BatchJob:
        now = int(time.time())
        expire_s = self.settings.expire_s
        job = BatchJob("batch_" + secrets.token_hex(12), input_file_id, metadata, now,
                       now + (math.ceil(expire_s) if expire_s > 0 else WINDOW_S), model)
        job.counts["total"] = total
        self.jobs[job.id] = job
        if expire_s > 0:
            asyncio.get_running_loop().call_later(expire_s, _stop, job, "expired")
        return job

    def _job(self, request: Request) -> BatchJob:
        batch_id = request.path_params["batch_id"]
        job = self.jobs.get(batch_id)
        if job is None:
            raise ApiFailure(404, f"No batch found with id {quoted(batch_id)}.", param="batch_id")
        return job

    async def _retrieve(self, request: Request) -> dict[str, Any]:
        return self._job(request).object()

    async def _cancel(self, request: Request) -> dict[str, Any]:
        job = self._job(request)
        if job.status in TERMINAL or job.status == "finalizing":
            raise ApiFailure(409, f"Cannot cancel a batch with status {job.status!r}.", param="batch_id",
                             code="invalid_state")
        if job.status != "cancelling":
            job.enter("cancelling")
            _stop(job, "cancelled")
        return job.object()

    async def _list(self, request: Request) -> dict[str, Any]:
        newest_first = [job.object() for job in reversed(self.jobs.values())]
        return page(newest_first, request.query_params.get("after"), request.query_params.get("limit") or "20", 100)

    # -- running a batch ---------------------------------------------------------------------------------------
    async def _run(self, job: BatchJob, data: bytes) -> None:
        """Run the batch to its end, reading its lines from `data` (the stored input file's own bytes) one at a time."""
        lines = request_lines(data, "input_file_id")
        results = _Results(self.store.max_file_bytes)
        try:
            if await _wait(job, self.settings.delay_s / 2):
                job.enter("in_progress")
                if await _wait(job, self.settings.delay_s / 2):
                    await self._run_lines(job, lines, results)
            await asyncio.to_thread(_add_unrun, lines, job.stop_reason or "cancelled", results)
            await self._finish(job, results)
        except ApiFailure as failure:  # an answer past the file cap, a full store, a line that cannot be read
            job.errors = {"object": "list", "data": [{"code": failure.code, "message": failure.message,
                                                      "param": None, "line": None}]}
            job.enter("failed")
        finally:
            self.store.release(job.input_file_id)

    async def _run_lines(self, job: BatchJob, lines: Iterator[tuple[int, bytes]], results: _Results) -> None:
        while not job.stop.is_set():
            line = await asyncio.to_thread(_next_line, lines)
            if line is None:
                return
            status, body = await self._run_line(line.body)
            results.add({"id": "batch_req_" + secrets.token_hex(12), "custom_id": line.custom_id,
                         "response": {"status_code": status, "request_id": request_id(), "body": body},
                         "error": None}, ok=status == 200)
            job.counts["completed" if status == 200 else "failed"] += 1
            self.stats["lines_ok" if status == 200 else "lines_failed"] += 1

    async def _run_line(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, body) of one line, as /v1/chat/completions would answer it (text only)."""
        fault = self.core.faults.draw()
        try:
            if fault is not None:
                model = body.get("model") if isinstance(body, dict) else None
                raise _fault_failure(fault, model if isinstance(model, str) else "the model")
            if not isinstance(body, dict):
                raise ApiFailure(400, "The line's 'body' must be a JSON object.", param="body", code="invalid_type")
            return 200, await self._answer_line(body)
        except ApiFailure as failure:
            return failure.status, _error_body(failure)
        except server_work.WorkersLost:
            return 503, _error_body(ApiFailure(503, "The server is overloaded or not ready yet.",
                                               error_type="server_error"))

    async def _answer_line(self, body: dict[str, Any]) -> dict[str, Any]:
        for _ in range(_POOL_FULL_TRIES):  # background work waits its turn rather than failing on a busy pool
            with contextlib.suppress(server_work.PoolFull):
                return await self.core.answer_text(body)
            await asyncio.sleep(_POOL_FULL_WAIT_S)
        raise ApiFailure(503, "The server stayed too busy to run this request.", error_type="server_error",
                         code="server_overloaded")

    async def _finish(self, job: BatchJob, results: _Results) -> None:
        job.enter("finalizing")
        if results.output:
            job.output_file_id = self.store.add(f"{job.id}_output.jsonl", "batch_output", bytes(results.output)).id
        if results.errors:
            job.error_file_id = self.store.add(f"{job.id}_error.jsonl", "batch_output", bytes(results.errors)).id
        job.counts["failed"] = results.failed
        job.enter(job.stop_reason or "completed")


class _Results:
    """A running batch's answers, kept as the JSONL its output and error files will hold (a parsed answer takes
    several times its encoded size); one file growing past the store's file cap fails the batch instead of growing
    further."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.output, self.errors = bytearray(), bytearray()
        self.failed = 0

    def add(self, result: dict[str, Any], *, ok: bool) -> None:
        kept = self.output if ok else self.errors
        kept += json.dumps(result, separators=(",", ":")).encode("ascii") + b"\n"
        self.failed += not ok
        if len(kept) > self.max_file_bytes:
            raise ApiFailure(413, f"The batch's {'output' if ok else 'error'} file grew past the {self.max_file_bytes} "
                             "bytes this server stores in one file.", code="file_too_large")


def _survey(data: bytes) -> tuple[int, str | None]:
    """(how many requests, the first one's model) of an input file for a batch being created: the lines are counted
    (at most MAX_BATCH_LINES) and only the first is parsed, for its model. Runs in a thread."""
    total, model = 0, None
    for number, line in request_lines(data, "input_file_id"):
        if number == 1:
            body = batch_line(number, line, "input_file_id").body
            model = body.get("model") if isinstance(body, dict) else None
        total = number
    if not total:
        raise ApiFailure(400, "The input file has no requests.", param="input_file_id", code="invalid_batch_file")
    return total, model if isinstance(model, str) else None


def _next_line(lines: Iterator[tuple[int, bytes]]) -> BatchLine | None:
    """The next request line, parsed (the file was checked when it was uploaded). Runs in a thread."""
    found = next(lines, None)
    return None if found is None else batch_line(*found, "input_file_id")


def _add_unrun(lines: Iterator[tuple[int, bytes]], reason: str, results: _Results) -> None:
    """The lines a stopped batch never ran, into its error file. Runs in a thread."""
    code = "batch_expired" if reason == "expired" else "batch_cancelled"
    why = "the batch expired" if reason == "expired" else "the batch was cancelled"
    for number, raw in lines:
        line = batch_line(number, raw, "input_file_id")
        results.add({"id": "batch_req_" + secrets.token_hex(12), "custom_id": line.custom_id, "response": None,
                     "error": {"code": code, "message": f"This request was not executed: {why} first."}}, ok=False)


def _stop(job: BatchJob, reason: str) -> None:
    if job.status in TERMINAL or job.status == "finalizing" or job.stop.is_set():
        return
    job.stop_reason = reason
    job.stop.set()


async def _wait(job: BatchJob, seconds: float) -> bool:
    """Wait `seconds` unless the batch is stopped first; True when it was not stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(job.stop.wait(), seconds)
    return not job.stop.is_set()


def _check_endpoint(endpoint: Any) -> None:
    if endpoint == BATCH_URL:
        return
    why = (" (the Batch API does not take /v1/audio/speech)" if endpoint == "/v1/audio/speech" else "")
    raise ApiFailure(400, f"Invalid value for 'endpoint': {quoted(endpoint)}; this server batches only "
                     f"{BATCH_URL!r}{why}.", param="endpoint", code="invalid_value")


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > MAX_METADATA
            or any(not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512
                   for k, v in value.items())):
        raise ApiFailure(400, f"Invalid 'metadata': at most {MAX_METADATA} string keys (64 characters) with string "
                         "values (512 characters).", param="metadata", code="invalid_value")
    return dict(value)


def _fault_failure(fault: str, model: str) -> ApiFailure:
    """What a line gets when the fault plan draws a fault for it: the status fault's own error, 429 for the rate
    and quota faults, and a 500 for the connection-level ones (a batch line has no connection to break)."""
    if fault.isdigit() and int(fault) in STATUS_ERRORS:
        error_type, code, message = STATUS_ERRORS[int(fault)]
        return ApiFailure(int(fault), message.replace("{model}", model[:MAX_QUOTED]), code=code, error_type=error_type)
    if fault.startswith("429") or fault == "quota":
        code = "insufficient_quota" if fault == "quota" else "rate_limit_exceeded"
        return ApiFailure(429, "Rate limit reached for requests (an injected fault).", code=code,
                          error_type="requests")
    return ApiFailure(500, SERVER_ERROR_MESSAGE, error_type="server_error")


def _error_body(failure: ApiFailure) -> dict[str, Any]:
    return {"error": {"message": failure.message, "type": failure.error_type, "param": failure.param,
                      "code": failure.code}}
