"""`--batch`: two-step's text step through the Batch API, across runs.

Before a run's documents: every submission in state that is not yet collected is brought forward (one never
uploaded is forgotten, one uploaded but not created is created or found, one at the API is polled, a finished one
has its output and error files read into state). Each document then takes one route: its batch answer is spoken
(`speak`), it waits for the batch holding it (`wait`), it is sent synchronously (`sync`: not batchable, or a failed
line with --batch-fallback sync), or it joins this run's new batch (`queue`). After the documents, the queue is
written as JSONL into OUT/.audiosum, recorded, uploaded, recorded, created and recorded: each step is in state
before the next is sent, so a run killed anywhere leaves nothing the next run does not find.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pipeline.errors import ApiError, TransientError
from pipeline.models import Document, RunSettings, SpokenSummary, Usage
from pipeline.plan.split import split_for_budget
from pipeline.providers.base import BatchService
from pipeline.providers.openai.batch import (
    MAX_FILE_BYTES,
    MAX_LINES,
    BatchApi,
    BatchState,
    LineOutcome,
    batch_line,
)
from pipeline.providers.openai.shapes import BATCH_FINISHED, api_id
from pipeline.providers.openai.wire import build_request_body
from pipeline.redact import from_server
from pipeline.state import STATE_DIR, RunState
from pipeline.state.batches import BatchLine, BatchRecord

RouteKind = Literal["speak", "wait", "sync", "queue"]
Emit = Callable[..., None]
# A submission not settled this long after it was queued is abandoned: the API's 24 h completion window, and a margin
# for a batch that finished late or a night the API could not be reached.
BATCH_DEADLINE_S = 30 * 3600


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    reason: str = ""
    line: BatchLine | None = None


@dataclass
class _Spool:
    """The JSONL of one submission being written: lines on disk in OUT/.audiosum, their (doc_id, fingerprint)."""

    handle: IO[bytes]
    path: Path
    lines: list[tuple[str, str]] = field(default_factory=list)
    size: int = 0


class BatchPath:
    def __init__(self, settings: RunSettings, state: RunState, run_id: str, provider: BatchService,
                 emit: Emit) -> None:
        self._settings = settings
        self._now = provider.clock.wall
        self._state = state
        self._run_id = run_id
        self._provider = provider
        self._api: BatchApi = provider.batch_api()
        self._emit = emit
        self._spools: list[_Spool] = []
        for stale in (settings.out_dir / STATE_DIR).glob(".batch-*.jsonl.tmp"):  # a killed run's (we hold the lock)
            stale.unlink(missing_ok=True)
        self.waiting = 0  # documents of this run that wait for a batch (queued now, or pending earlier)

    # -- before the documents ---------------------------------------------------------------------------------
    async def bring_forward(self) -> None:
        """Every unsettled submission one step on; a failure to reach the API leaves it for the next run, until its
        deadline (the API's 24 h window and a margin) passes and it is abandoned. --force abandons every one."""
        for record in self._state.batches.unfinished():
            label = _label(record)
            if self._settings.force:
                await self._abandon(record, "given up by --force", cancel=True)
                continue
            overdue = self._now() - record.created_at > BATCH_DEADLINE_S
            if overdue and record.batch_id is None:  # never created: creating it now would only pay twice
                await self._abandon(record, f"not created within {BATCH_DEADLINE_S // 3600} h")
                continue
            try:
                settled = await self._advance(record)
            except ApiError as exc:
                if overdue:
                    await self._abandon(record, f"no answer past its deadline ({exc})", cancel=True)
                    continue
                self._emit("warning", kind="batch_unreachable", batch=label,
                           message=f"batch {label} could not be checked: {exc}; the next run tries again "
                                   "(--force gives it up)")
                continue
            if overdue and not settled:
                await self._abandon(record, f"not finished {BATCH_DEADLINE_S // 3600} h after it was submitted",
                                    cancel=True)

    async def _advance(self, record: BatchRecord) -> bool:
        """One step on; True when the submission is settled (forgotten or collected)."""
        records = self._state.batches
        if record.status == "queued":  # killed before its upload: nothing reached the API
            records.forget(record.batch_key)
            return True
        if record.batch_id is None:
            if api_id(record.file_id) is None:
                raise TransientError("the recorded file id is not an API id", cause="broken_answer")
            assert record.file_id is not None
            found = await self._api.created_from(record.file_id) or await self._api.create(
                record.file_id, {"audiosum_batch": record.batch_key})
            records.update(record.batch_key, status="submitted", api_status=found.status, batch_id=found.batch_id,
                           counts=found.counts)
            self._emit("batch", action="created", batch=found.batch_id, status=found.status, counts=found.counts)
            return False
        if api_id(record.batch_id) is None:  # recorded by an audiosum that did not check ids
            raise TransientError("the recorded batch id is not an API id", cause="broken_answer")
        batch = await self._api.retrieve(record.batch_id)
        records.update(record.batch_key, status="submitted", api_status=batch.status, counts=batch.counts)
        self._emit("batch", action="polled", batch=batch.batch_id, status=batch.status, counts=batch.counts)
        if batch.status in BATCH_FINISHED:
            await self._collect(record, batch)
            return True
        return False

    async def _abandon(self, record: BatchRecord, reason: str, *, cancel: bool = False) -> None:
        """Give a submission up: its pending documents take the fallback route from this run on. cancel: ask the API
        to stop it too (best effort: a refusal is only reported)."""
        label = _label(record)
        if cancel and record.batch_id is not None and api_id(record.batch_id) is not None:
            try:
                await self._api.cancel(record.batch_id)
            except ApiError as exc:
                self._emit("warning", kind="batch_not_cancelled", batch=label,
                           message=f"batch {label} could not be cancelled at the API: {exc}")
        pending = self._state.batches.abandon(record.batch_key, f"batch {label} abandoned: {reason}")
        self._emit("warning", kind="batch_abandoned", batch=label,
                   message=f"batch {label} abandoned: {reason}; its {pending} waiting document(s) go "
                           + ("out synchronously" if self._settings.batch_fallback == "sync" else "into a new batch"))

    async def _collect(self, record: BatchRecord, batch: BatchState) -> None:
        """A finished batch's answers and errors into state as its files stream in; lines it never answered failed
        with its status."""
        records = self._state.batches
        pending = {line.doc_id for line in records.lines(record.batch_key) if line.status == "pending"}

        def keep(outcome: LineOutcome) -> None:
            if outcome.custom_id not in pending:  # answered twice in the files, or a retried read: the first wins
                return
            pending.discard(outcome.custom_id)
            if outcome.text is not None:
                records.set_line(record.batch_key, outcome.custom_id, "answered", text=outcome.text,
                                 usage=outcome.usage.as_dict(), request_id=outcome.request_id)
            else:
                records.set_line(record.batch_key, outcome.custom_id, "failed", error=outcome.error)

        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id is not None and pending:
                await self._api.read_outcomes(file_id, pending, keep)
        for doc_id in pending:
            records.set_line(record.batch_key, doc_id, "failed", error=f"the batch ended {batch.status} without it")
        records.update(record.batch_key, status="collected", api_status=batch.status)
        if batch.status == "cancelled":
            self._emit("warning", kind="batch_cancelled", batch=batch.batch_id,
                       message=f"batch {batch.batch_id} was cancelled; its unanswered documents go "
                               + ("out synchronously" if self._settings.batch_fallback == "sync"
                                  else "into the next batch"))
        self._emit("batch", action="collected", batch=batch.batch_id, status=batch.status,
                   counts=records.line_counts(record.batch_key))

    # -- each document ----------------------------------------------------------------------------------------
    def route(self, document: Document, fingerprint: str) -> Route:
        """fingerprint: the run's settings fingerprint for the document; a line is also bound to the document's
        content, so an answer written for an older text is never spoken for a newer one."""
        fingerprint = hashlib.sha256(f"{fingerprint}\n{document.sha256}".encode()).hexdigest()
        if not self._batchable(document):
            return Route("sync", "not batchable (a recording, narrate mode, text output, or over one request)")
        line = self._state.batches.latest_line(document.id)
        if line is None or line.status == "collected":
            return self._queue(document, fingerprint)
        if line.status == "pending":  # never sent twice while a batch holds it, even if it changed since
            self.waiting += 1
            return Route("wait", f"waiting for batch {line.batch_id or line.batch_key}", line)
        if line.status == "answered":
            if line.fingerprint == fingerprint:
                return Route("speak", line=line)
            return self._queue(document, fingerprint)  # changed since it was batched: the answer is stale
        if self._settings.batch_fallback == "sync":
            return Route("sync", f"its batch line failed ({line.error}); sent synchronously", line)
        return self._queue(document, fingerprint)

    def _batchable(self, document: Document) -> bool:
        settings = self._settings
        return (document.audio is None and settings.mode == "summary" and settings.output != "text"
                and len(split_for_budget(document.text, settings.max_input_tokens)) == 1)

    def _queue(self, document: Document, fingerprint: str) -> Route:
        line = batch_line(document, self._settings, build_request_body(document, self._settings)["messages"])
        spool = self._spools[-1] if self._spools else None
        if spool is None or len(spool.lines) >= MAX_LINES or spool.size + len(line) > MAX_FILE_BYTES:
            spool = self._new_spool()
        spool.handle.write(line)
        spool.size += len(line)
        spool.lines.append((document.id, fingerprint))
        self.waiting += 1
        return Route("wait", "queued for a new batch")

    def _new_spool(self) -> _Spool:
        folder = self._settings.out_dir / STATE_DIR
        fd, name = tempfile.mkstemp(prefix=".batch-", suffix=".jsonl.tmp", dir=folder)
        spool = _Spool(os.fdopen(fd, "w+b"), Path(name))
        self._spools.append(spool)
        return spool

    def speaker(self, document: Document, line: BatchLine) -> Callable[[], Awaitable[SpokenSummary]]:
        """What makes the document's summary from its batch answer: the provider speaks the written text."""
        text, usage = self.answer(line)
        return functools.partial(self._provider.speak_batch_answer, document, self._settings, text, usage=usage,
                                 request_id=line.request_id, batch_id=line.batch_id)

    def spoken(self, line: BatchLine) -> None:
        self._state.batches.set_line(line.batch_key, line.doc_id, "collected")

    @staticmethod
    def answer(line: BatchLine) -> tuple[str, Usage]:
        assert line.text is not None
        usage = Usage(**{k: v for k, v in line.usage.items() if k in ("prompt_tokens", "completion_tokens",
                                                                       "total_tokens")})
        return line.text, usage

    # -- after the documents ----------------------------------------------------------------------------------
    async def submit(self) -> None:
        """Each spooled queue: recorded, uploaded (file id recorded), created (batch id recorded)."""
        try:
            for spool in self._spools:
                if spool.lines:
                    await self._submit(spool)
        finally:
            self.discard()

    async def _submit(self, spool: _Spool) -> None:
        records = self._state.batches
        key = records.queue(self._run_id, spool.lines)
        spool.handle.flush()
        try:
            file_id = await self._api.upload(spool.handle, f"audiosum-{key}.jsonl")
        except ApiError as exc:
            records.forget(key)  # nothing reached the API: the documents are queued again by the next run
            self._emit("warning", kind="batch_not_submitted", message=f"the batch could not be uploaded ({exc}); "
                       "its documents are queued again by the next run")
            return
        records.uploaded(key, file_id)
        try:
            batch = await self._api.create(file_id, {"audiosum_batch": key})
        except ApiError as exc:
            self._emit("warning", kind="batch_not_created", message=f"the batch file {file_id} was uploaded but the "
                       f"batch could not be created ({exc}); the next run creates it")
            return
        records.update(key, status="submitted", api_status=batch.status, batch_id=batch.batch_id, counts=batch.counts)
        self._emit("batch", action="submitted", batch=batch.batch_id, status=batch.status,
                   counts={"total": len(spool.lines)})

    def discard(self) -> None:
        for spool in self._spools:
            spool.handle.close()
            with contextlib.suppress(FileNotFoundError):
                spool.path.unlink()
        self._spools.clear()


def _label(record: BatchRecord) -> str:
    """How a submission is named in warnings: its batch id (one recorded before ids were checked passes the
    redaction boundary), else audiosum's own key."""
    return from_server(record.batch_id, limit=80) or record.batch_key if record.batch_id else record.batch_key


def pending_summary(state: RunState) -> list[dict[str, Any]]:
    """For `audiosum status`: each submission not yet collected, with its line counts."""
    return [{"batch": record.batch_id or record.batch_key, "status": record.status,
             "api_status": record.api_status, "file": record.file_id,
             "submitted_at": record.created_at, "api_counts": record.counts,
             "lines": state.batches.line_counts(record.batch_key)} for record in state.batches.unfinished()]
