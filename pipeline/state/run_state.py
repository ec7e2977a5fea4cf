"""RunState: one open state database and what a run and its reports ask of it (runs, documents, attempts, outputs).

Belongs to one run or one command, never global; opening the file is database.py's, the schema migrations.py's.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.errors import DiskFull, UsageError
from pipeline.models import STATE_DIR, Attempt, DocumentResult
from pipeline.state.batches import BatchRecords
from pipeline.state.database import (
    STATE_FILE,
    _connect_for_writing,
    _connect_read_only,
    no_space_is_disk_full,
)

COMMIT_EVERY_S = 0.5

_RESULT_COLUMNS = [f.name for f in fields(DocumentResult)]


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A row of `documents`: the last outcome for one doc-id and the outputs it left."""

    doc_id: str
    source: str
    title: str | None
    input_sha256: str
    fingerprint: str
    status: str
    error: str | None
    attempts: int
    main_name: str | None  # the main output (audio in any --format, or .txt), as DocumentResult.main_name
    main_sha256: str | None
    main_size: int | None
    main_mtime_ns: int | None
    sidecar_name: str | None
    sidecar_sha256: str | None
    sidecar_size: int | None
    sidecar_mtime_ns: int | None
    duration_s: float
    transcript: str | None
    run_id: str
    started_at: float | None
    finished_at: float
    followups_json: str | None = None
    extra_files_json: str | None = None  # [[name, sha256, size, mtime_ns], ...] of the answers' files
    degraded_retry: int = 0  # 1: degraded by a cause that may pass; the next run makes it again


_RECORD_COLUMNS = [f.name for f in fields(DocumentRecord)]
_INSERT_RESULT = (f"INSERT INTO run_documents ({', '.join(['run_id', 'seq'] + _RESULT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in range(len(_RESULT_COLUMNS) + 2))})")
_SAVE_DOCUMENT = (f"INSERT OR REPLACE INTO documents ({', '.join(_RECORD_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in _RECORD_COLUMNS)})")


class RunState:
    """One open state database; belongs to one run (or one `report` command), never global."""

    def __init__(self, out_dir: Path, *, must_exist: bool = False, read_only: bool = False) -> None:
        """Open (and migrate) OUT's database, creating it unless must_exist; read_only: see open_read_only."""
        folder = out_dir / STATE_DIR
        if (must_exist or read_only) and not (folder / STATE_FILE).exists():
            raise UsageError(f"{out_dir} has no audiosum state ({STATE_DIR}/{STATE_FILE}); run `audiosum run` first")
        self.path = folder / STATE_FILE
        if read_only:
            self._db = _connect_read_only(self.path)
        else:
            with no_space_is_disk_full(self.path):
                folder.mkdir(parents=True, exist_ok=True)
                self._db = _connect_for_writing(self.path)
        self._seq = 0
        self._last_commit = time.monotonic()
        # Called before each commit: the runner makes the output folder durable first, so a document the
        # committed state calls done always has its renamed files on disk.
        self.before_commit: Callable[[], None] | None = None
        self.batches = BatchRecords(self._db, self.commit)  # --batch's submissions and their lines

    def close(self) -> None:
        try:
            self.commit()
        except DiskFull:
            # Already reported by the run; what could not be committed is made again by the next run.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._db.close()

    def _no_space_is_disk_full(self) -> contextlib.AbstractContextManager[None]:
        return no_space_is_disk_full(self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A document's rows go into the current batch transaction; batches commit every COMMIT_EVERY_S.

        Grouping keeps the hot path cheap. A crash loses at most that window of bookkeeping, and those
        documents are simply made again on the next run (their outputs were written atomically).
        """
        with self._no_space_is_disk_full():
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            yield
        if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        if self._db.in_transaction:
            if self.before_commit is not None:
                self.before_commit()
            with self._no_space_is_disk_full():
                self._db.execute("COMMIT")
        self._last_commit = time.monotonic()

    def mark_abandoned_runs(self) -> int:
        """Runs still marked running when a new run holds the lock died without finishing (kill -9, reboot)."""
        self.commit()
        with self._no_space_is_disk_full():
            return self._db.execute("UPDATE runs SET status = 'crashed' WHERE status = 'running'").rowcount

    def start_run(self, settings: dict[str, Any]) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        with self._no_space_is_disk_full():
            self._db.execute("INSERT INTO runs (run_id, started_at, status, settings_json) VALUES (?, ?, 'running', ?)",
                             (run_id, time.time(), json.dumps(settings)))
        return run_id

    def correct_setting(self, run_id: str, name: str, value: int | str) -> None:
        """A run's recorded setting as the run decided it once under way (--executor ray sizes --concurrency)."""
        with self._no_space_is_disk_full():
            self._db.execute("UPDATE runs SET settings_json = json_set(settings_json, '$.' || ?, ?) WHERE run_id = ?",
                             (name, value, run_id))

    def warned_before(self, run_id: str, kind: str) -> bool:
        """Whether a run of this folder before `run_id` already gave a warning of this kind."""
        row = self._db.execute(
            "SELECT 1 FROM runs, json_each(runs.warnings_json) AS w WHERE runs.run_id != ? AND runs.warnings_json "
            "IS NOT NULL AND json_extract(w.value, '$.kind') = ? LIMIT 1", (run_id, kind)).fetchone()
        return row is not None

    def record_result(self, run_id: str, result: DocumentResult) -> None:
        self._seq += 1
        # getattr, not dataclasses.asdict: asdict deep-copies every field and showed up in profiles.
        self._db.execute(_INSERT_RESULT, [run_id, self._seq] + [getattr(result, c) for c in _RESULT_COLUMNS])

    def episodes(self, limit: int) -> list[DocumentRecord]:
        """The newest `limit` documents that are done and have outputs (for the podcast feed)."""
        rows = self._db.execute(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM documents WHERE status IN ('done', 'degraded') "
            "AND sidecar_name IS NOT NULL ORDER BY finished_at DESC, doc_id LIMIT ?", (limit,))
        return [DocumentRecord(**dict(row)) for row in rows]

    def owned_among(self, names: set[str]) -> set[str]:
        """Which of these file names in OUT/ audiosum made (and has not removed since)."""
        owned: set[str] = set()
        ordered = sorted(names)
        for start in range(0, len(ordered), 500):  # SQLite's limit on bound parameters
            chunk = ordered[start:start + 500]
            owned.update(row[0] for row in self._db.execute(
                f"SELECT name FROM owned_outputs WHERE name IN ({', '.join('?' for _ in chunk)})", chunk))
        return owned

    def owns(self, name: str) -> bool:
        return bool(self.owned_among({name}))

    def claim_outputs(self, doc_id: str | None, names: set[str]) -> None:
        """Record these names as audiosum's, committed before any of them is written: a run killed between the
        rename and its next commit must still find the file its own."""
        new = names - self.owned_among(names)
        if not new:
            return
        with self.transaction():
            self._db.executemany("INSERT OR IGNORE INTO owned_outputs (name, doc_id, claimed_at) VALUES (?, ?, ?)",
                                 [(name, doc_id, time.time()) for name in sorted(new)])
        self.commit()

    def unverified_outputs(self) -> dict[str, list[str]]:
        """doc_id -> names that may be files an earlier audiosum made before it recorded them (see m009)."""
        found: dict[str, list[str]] = {}
        for name, doc_id in self._db.execute("SELECT name, doc_id FROM unverified_outputs ORDER BY name"):
            found.setdefault(doc_id, []).append(name)
        return found

    def forget_unverified(self) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM unverified_outputs")
        self.commit()

    def release_outputs(self, names: set[str]) -> None:
        """Forget names whose files audiosum removed: a file the user puts there later is theirs."""
        with self.transaction():
            self._db.executemany("DELETE FROM owned_outputs WHERE name = ?", [(name,) for name in sorted(names)])

    def case_twin(self, doc_id: str) -> str | None:
        """Another recorded document id that differs from doc_id only in case, if there is one."""
        row = self._db.execute("SELECT doc_id FROM documents WHERE lower(doc_id) = lower(?) AND doc_id != ? LIMIT 1",
                               (doc_id, doc_id)).fetchone()
        return row[0] if row is not None else None

    def seen_in_run(self, run_id: str, doc_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM run_documents WHERE run_id = ? AND doc_id = ? LIMIT 1",
                                (run_id, doc_id)).fetchone() is not None

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute(f"SELECT {', '.join(_RECORD_COLUMNS)} FROM documents WHERE doc_id = ?",
                               (doc_id,)).fetchone()
        return DocumentRecord(**dict(row)) if row is not None else None

    def save_document(self, record: DocumentRecord) -> None:
        self._db.execute(_SAVE_DOCUMENT, [getattr(record, c) for c in _RECORD_COLUMNS])

    def record_attempts(self, run_id: str, doc_id: str, attempts: tuple[Attempt, ...]) -> None:
        last = len(attempts)
        self._db.executemany(
            "INSERT INTO attempts (run_id, doc_id, number, outcome, status, error_class, wait_s, elapsed_s,"
            " request_id, retried) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, doc_id, a.number, a.outcome, a.status, a.error_class, a.wait_s, a.elapsed_s, a.request_id,
              # Retried: it failed and another try followed. A long document's parts are several requests,
              # so "not the last attempt" alone would count its successful part requests as retries.
              int(a.outcome != "ok" and index < last)) for index, a in enumerate(attempts, start=1)])

    def retries_by_cause(self, run_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT outcome, COUNT(*) FROM attempts WHERE run_id = ? AND retried = 1 GROUP BY outcome ORDER BY 2 DESC",
            (run_id,))
        return {outcome: count for outcome, count in rows}

    def finish_run(self, run_id: str, status: str, abort_reason: str | None = None,
                   warnings: list[dict[str, Any]] | None = None) -> None:
        self.commit()
        with self._no_space_is_disk_full():
            self._db.execute("UPDATE runs SET ended_at = ?, status = ?, abort_reason = ?, warnings_json = ? "
                             "WHERE run_id = ?", (time.time(), status, abort_reason,
                                                  json.dumps(warnings) if warnings else None, run_id))

    def run(self, run_id: str | None = None) -> sqlite3.Row | None:
        if run_id is None:
            return self._db.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        return self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()

    def recent_runs(self, limit: int = 10) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()

    def latest_real_run(self) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM runs WHERE status != 'dry-run' ORDER BY started_at DESC LIMIT 1").fetchone()

    def document_counts(self) -> dict[str, int]:
        return {status: count for status, count in
                self._db.execute("SELECT status, COUNT(*) FROM documents GROUP BY status ORDER BY status")}

    def results(self, run_id: str, *, status: str | None = None, exclude: bool = False) -> Iterator[DocumentResult]:
        """A run's results in doc-id order, streamed; optionally only (or all but) one status."""
        where, params = "run_id = ?", [run_id]
        if status is not None:
            where += " AND status != ?" if exclude else " AND status = ?"
            params.append(status)
        cursor = self._db.execute(
            f"SELECT {', '.join(_RESULT_COLUMNS)} FROM run_documents WHERE {where} ORDER BY doc_id, seq", params)
        for row in cursor:
            yield DocumentResult(**dict(row))

    def totals(self, run_id: str) -> dict[str, Any]:
        row = self._db.execute("""
            SELECT COUNT(*) AS documents,
                   COALESCE(SUM(status = 'done'), 0) AS done,
                   COALESCE(SUM(status = 'degraded'), 0) AS degraded,
                   COALESCE(SUM(status = 'skipped'), 0) AS skipped,
                   COALESCE(SUM(status = 'failed'), 0) AS failed,
                   COALESCE(SUM(status = 'waiting'), 0) AS waiting,
                   COALESCE(SUM(CASE WHEN status IN ('done', 'degraded') THEN duration_s END), 0.0) AS audio_seconds,
                   COALESCE(SUM(prompt_tokens), 0) AS tokens_in,
                   COALESCE(SUM(completion_tokens), 0) AS tokens_out,
                   COALESCE(SUM(prompt_audio_tokens), 0) AS audio_tokens_in,
                   COALESCE(SUM(completion_audio_tokens), 0) AS audio_tokens_out,
                   COALESCE(SUM(requests), 0) AS requests
            FROM run_documents WHERE run_id = ?""", (run_id,)).fetchone()
        totals = dict(row)
        totals["audio_seconds"] = round(totals["audio_seconds"], 3)
        return totals

    def measured_speed(self, provider: str, last: int = 5) -> tuple[float, int] | None:
        """(audio seconds made per wall second, runs measured) over the last `last` ended runs of `provider` in this
        folder that made audio; None when there is none. The dry run's time estimate reads it."""
        runs = self._db.execute(
            "SELECT run_id, started_at, ended_at FROM runs WHERE ended_at IS NOT NULL AND ended_at > started_at "
            "AND status IN ('finished', 'interrupted') AND json_extract(settings_json, '$.provider') = ? "
            "ORDER BY started_at DESC LIMIT 50", (provider,)).fetchall()
        audio = wall = 0.0
        measured = 0
        for run in runs:
            made = self.totals(run["run_id"])["audio_seconds"]
            if made > 0:
                audio, wall, measured = audio + made, wall + run["ended_at"] - run["started_at"], measured + 1
                if measured == last:
                    break
        return (audio / wall, measured) if measured else None
