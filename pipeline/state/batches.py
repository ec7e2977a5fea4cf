"""--batch's records in the state database: each submission to the Batch API and each document line in it.

Every change commits at once (not in the run's grouped transaction): the point of these rows is that a run killed
between uploading a file and creating its batch, or between creating it and recording it, leaves what the next run
needs to find both. Queries only; the Batch API itself is spoken in pipeline/providers/openai/batch.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

# A submission's lifecycle as audiosum records it: `queued` (lines recorded, nothing uploaded yet), `uploaded` (the
# file exists; no batch yet), `submitted` (a batch exists at the API), then `collected` (its lines were read) or
# `abandoned` (past its deadline, or given up with --force: its pending lines failed). The API's own status of the
# batch is kept apart, in api_status: the server's word never moves this lifecycle by itself.
LocalStatus = Literal["queued", "uploaded", "submitted", "collected", "abandoned"]
SETTLED = ("collected", "abandoned")
LineStatus = Literal["pending", "answered", "failed", "collected"]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_key: str
    run_id: str
    created_at: float
    file_id: str | None
    batch_id: str | None
    status: LocalStatus
    api_status: str | None
    counts: dict[str, int]
    note: str | None


@dataclass(frozen=True, slots=True)
class BatchLine:
    batch_key: str
    doc_id: str
    fingerprint: str
    status: LineStatus
    text: str | None
    usage: dict[str, Any]
    request_id: str | None
    error: str | None
    batch_id: str | None


class BatchRecords:
    def __init__(self, db: sqlite3.Connection, commit: Callable[[], None]) -> None:
        self._db = db
        self._commit = commit

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        self._commit()  # nothing of the run's grouped transaction rides along unnoticed...
        self._db.execute("BEGIN")
        try:
            self._db.execute(sql, tuple(params))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._commit()  # ...and this row is durable before the caller sends anything

    def queue(self, run_id: str, lines: list[tuple[str, str]]) -> str:
        """Record a new submission and its (doc_id, fingerprint) lines, before anything is uploaded."""
        key = "local-" + uuid.uuid4().hex[:12]
        now = time.time()
        self._commit()
        self._db.execute("BEGIN")
        try:
            self._db.execute("INSERT INTO batches (batch_key, run_id, created_at, status, updated_at) VALUES "
                             "(?, ?, ?, 'queued', ?)", (key, run_id, now, now))
            self._db.executemany("INSERT INTO batch_lines (batch_key, doc_id, fingerprint, status) VALUES "
                                 "(?, ?, ?, 'pending')", [(key, doc_id, fp) for doc_id, fp in lines])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._commit()
        return key

    def uploaded(self, key: str, file_id: str) -> None:
        self._write("UPDATE batches SET file_id = ?, status = 'uploaded', updated_at = ? WHERE batch_key = ?",
                    (file_id, time.time(), key))

    def update(self, key: str, *, status: LocalStatus, api_status: str | None = None, batch_id: str | None = None,
               counts: dict[str, int] | None = None, note: str | None = None) -> None:
        """status: audiosum's lifecycle; api_status, batch_id, counts: what the API said (checked by the caller
        against the API's shapes), each kept as it was when not given."""
        self._write("UPDATE batches SET status = ?, api_status = COALESCE(?, api_status), batch_id = COALESCE(?, "
                    "batch_id), counts_json = COALESCE(?, counts_json), note = COALESCE(?, note), updated_at = ? "
                    "WHERE batch_key = ?", (status, api_status, batch_id,
                                            json.dumps(counts) if counts is not None else None, note, time.time(),
                                            key))

    def abandon(self, key: str, reason: str) -> int:
        """Give a submission up: its pending lines fail with `reason` (their documents take the fallback route), it
        is never polled again. Returns how many lines were pending."""
        self._commit()
        self._db.execute("BEGIN")
        try:
            pending = self._db.execute("UPDATE batch_lines SET status = 'failed', error = ? WHERE batch_key = ? AND "
                                       "status = 'pending'", (reason, key)).rowcount
            self._db.execute("UPDATE batches SET status = 'abandoned', note = ?, updated_at = ? WHERE batch_key = ?",
                             (reason, time.time(), key))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._commit()
        return int(pending)

    def forget(self, key: str) -> None:
        """A submission that never reached the API (killed before its upload): its documents are free again."""
        self._commit()
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM batch_lines WHERE batch_key = ?", (key,))
        self._db.execute("DELETE FROM batches WHERE batch_key = ?", (key,))
        self._commit()

    def set_line(self, key: str, doc_id: str, status: LineStatus, *, text: str | None = None,
                 usage: dict[str, Any] | None = None, request_id: str | None = None, error: str | None = None) -> None:
        self._write("UPDATE batch_lines SET status = ?, text = COALESCE(?, text), usage_json = COALESCE(?, "
                    "usage_json), request_id = COALESCE(?, request_id), error = COALESCE(?, error) "
                    "WHERE batch_key = ? AND doc_id = ?",
                    (status, text, json.dumps(usage) if usage is not None else None, request_id, error, key, doc_id))

    def unfinished(self) -> list[BatchRecord]:
        """Submissions not yet settled: queued, uploaded, or submitted to the API (oldest first)."""
        rows = self._db.execute("SELECT * FROM batches WHERE status NOT IN (?, ?) ORDER BY created_at", SETTLED)
        return [_record(row) for row in rows]

    def recent(self, limit: int = 10) -> list[BatchRecord]:
        rows = self._db.execute("SELECT * FROM batches ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_record(row) for row in rows]

    def lines(self, key: str) -> list[BatchLine]:
        rows = self._db.execute("SELECT l.*, b.batch_id FROM batch_lines l JOIN batches b USING (batch_key) "
                                "WHERE batch_key = ? ORDER BY doc_id", (key,))
        return [_line(row) for row in rows]

    def latest_line(self, doc_id: str) -> BatchLine | None:
        """The document's line in its newest submission, or None when it was never batched."""
        row = self._db.execute("SELECT l.*, b.batch_id FROM batch_lines l JOIN batches b USING (batch_key) "
                               "WHERE l.doc_id = ? ORDER BY b.created_at DESC LIMIT 1", (doc_id,)).fetchone()
        return _line(row) if row is not None else None

    def line_counts(self, key: str) -> dict[str, int]:
        return {status: count for status, count in self._db.execute(
            "SELECT status, COUNT(*) FROM batch_lines WHERE batch_key = ? GROUP BY status", (key,))}


def _record(row: sqlite3.Row) -> BatchRecord:
    return BatchRecord(row["batch_key"], row["run_id"], row["created_at"], row["file_id"], row["batch_id"],
                       row["status"], row["api_status"], json.loads(row["counts_json"]) if row["counts_json"] else {},
                       row["note"])


def _line(row: sqlite3.Row) -> BatchLine:
    return BatchLine(row["batch_key"], row["doc_id"], row["fingerprint"], row["status"], row["text"],
                     json.loads(row["usage_json"]) if row["usage_json"] else {}, row["request_id"], row["error"],
                     row["batch_id"])
