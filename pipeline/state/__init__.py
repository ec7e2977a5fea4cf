"""The run's memory in SQLite (OUT/.audiosum/state.sqlite): runs and per-document results.

Owns all SQL; the schema migrates itself through named, ordered migrations recorded in the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.errors import DiskFull, UsageError, is_no_space
from pipeline.models import Attempt, DocumentResult

STATE_DIR = ".audiosum"
STATE_FILE = "state.sqlite"
COMMIT_EVERY_S = 0.5

SQLITE_FULL = 13  # "database or disk is full"
SQLITE_IOERR = 10  # "disk I/O error": what SQLite says when a write finds no room, with a few KiB left
LOW_SPACE_BYTES = 1 << 20


@contextlib.contextmanager
def no_space_is_disk_full(database: Path) -> Iterator[None]:
    """A full disk met while opening or writing the database leaves as DiskFull (the run stops sending); other
    errors leave as they are."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == SQLITE_FULL or (code == SQLITE_IOERR and _low_on_space(database.parent)):
            raise DiskFull(f"no space left to record the run in {database} ({exc}); stopped before sending more "
                           "requests: free some space and run again to finish the rest") from exc
        raise
    except OSError as exc:
        if is_no_space(exc):
            raise DiskFull(f"no space left for the run's state in {database.parent} ({exc.strerror}); free some "
                           "space and run again") from exc
        raise


def _low_on_space(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < LOW_SPACE_BYTES

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(function: Migration) -> Migration:
    MIGRATIONS.append((function.__name__, function))
    return function


@migration
def m001_runs_and_results(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL,
            settings_json TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE run_documents (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            seq INTEGER NOT NULL,
            doc_id TEXT NOT NULL,
            source TEXT NOT NULL,
            title TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            error_class TEXT,
            wav_name TEXT,
            sidecar_name TEXT,
            transcript TEXT,
            duration_s REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            elapsed_s REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, seq)
        )""")


@migration
def m002_attempts(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE attempts (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            doc_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            status INTEGER,
            error_class TEXT,
            wait_s REAL NOT NULL DEFAULT 0,
            elapsed_s REAL NOT NULL DEFAULT 0,
            request_id TEXT,
            retried INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("CREATE INDEX attempts_by_run ON attempts (run_id, doc_id)")


@migration
def m003_documents(db: sqlite3.Connection) -> None:
    # The latest known state of each document across runs: what was made from which input and settings.
    db.execute("""
        CREATE TABLE documents (
            doc_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            title TEXT,
            input_sha256 TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            wav_name TEXT, wav_sha256 TEXT, wav_size INTEGER, wav_mtime_ns INTEGER,
            sidecar_name TEXT, sidecar_sha256 TEXT, sidecar_size INTEGER, sidecar_mtime_ns INTEGER,
            duration_s REAL NOT NULL DEFAULT 0,
            transcript TEXT,
            run_id TEXT NOT NULL,
            started_at REAL,
            finished_at REAL NOT NULL
        )""")


@migration
def m004_audio_tokens(db: sqlite3.Connection) -> None:
    # Audio tokens are priced differently from text tokens, so the cost estimate needs them apart.
    db.execute("ALTER TABLE run_documents ADD COLUMN prompt_audio_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE run_documents ADD COLUMN completion_audio_tokens INTEGER NOT NULL DEFAULT 0")


@migration
def m005_run_documents_by_id(db: sqlite3.Connection) -> None:
    # Duplicate ids within a run are found here rather than in an in-memory set that grows with the run.
    db.execute("CREATE INDEX run_documents_by_id ON run_documents (run_id, doc_id)")


@migration
def m006_result_meta(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE run_documents ADD COLUMN meta_json TEXT")


@migration
def m007_followups(db: sqlite3.Connection) -> None:
    # Follow-up questions: their answers for the report, and the extra files (<id>.q1.wav, ...) a skip checks.
    db.execute("ALTER TABLE run_documents ADD COLUMN followups_json TEXT")
    db.execute("ALTER TABLE documents ADD COLUMN followups_json TEXT")
    db.execute("ALTER TABLE documents ADD COLUMN extra_files_json TEXT")


@migration
def m008_abort_reason(db: sqlite3.Connection) -> None:
    # Why a run stopped early (a refused key, an internal error), so `audiosum report` can say it again.
    db.execute("ALTER TABLE runs ADD COLUMN abort_reason TEXT")


RUN_FILE_NAMES = ("report.json", "report.html", "podcast.xml")  # the run's own files in OUT/, not a document's


@migration
def m009_owned_outputs(db: sqlite3.Connection) -> None:
    # Every file audiosum made in OUT/, so it never replaces one it did not make. Folders made before this
    # migration already hold outputs: the documents' recorded files and the run's report and feed are claimed for
    # them. Podcast transcripts are only candidates (only the newest episodes had them, and the user may keep a file
    # of that name): podcast.adopt_earlier_transcripts claims one whose content is the document's transcript.
    db.execute("CREATE TABLE owned_outputs (name TEXT PRIMARY KEY, doc_id TEXT, claimed_at REAL NOT NULL)")
    # Ids that differ only in case would name the same files on a case-insensitive file system.
    db.execute("CREATE INDEX documents_by_folded_id ON documents (lower(doc_id))")
    now = time.time()
    names: list[tuple[str, str | None]] = []
    candidates: list[tuple[str, str]] = []
    for doc_id, wav, sidecar, extra in db.execute(
            "SELECT doc_id, wav_name, sidecar_name, extra_files_json FROM documents"):
        names += [(n, doc_id) for n in (wav, sidecar) if n]
        names += [(str(entry[0]), doc_id) for entry in json.loads(extra or "[]")]
        if wav and not wav.endswith(".txt"):
            candidates += [(f"{doc_id}.txt", doc_id), (f"{doc_id}.vtt", doc_id)]
    db.execute("CREATE TABLE unverified_outputs (name TEXT PRIMARY KEY, doc_id TEXT NOT NULL)")
    db.executemany("INSERT OR IGNORE INTO unverified_outputs (name, doc_id) VALUES (?, ?)", candidates)
    if db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None:
        names += [(n, None) for n in RUN_FILE_NAMES]
    db.executemany("INSERT OR IGNORE INTO owned_outputs (name, doc_id, claimed_at) VALUES (?, ?, ?)",
                   [(name, doc_id, now) for name, doc_id in names])


@migration
def m010_main_output_names(db: sqlite3.Connection) -> None:
    # The columns first named wav_* hold the main output whatever its format (.mp3, .opus, .flac, or .txt with
    # --output text): named for what they hold. RENAME COLUMN needs SQLite 3.25 (2018).
    db.execute("ALTER TABLE run_documents RENAME COLUMN wav_name TO main_name")
    for part in ("name", "sha256", "size", "mtime_ns"):
        db.execute(f"ALTER TABLE documents RENAME COLUMN wav_{part} TO main_{part}")


def migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    for name, function in MIGRATIONS:
        if name in done:
            continue
        with db:
            function(db)
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))


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


_RECORD_COLUMNS = [f.name for f in fields(DocumentRecord)]
_INSERT_RESULT = (f"INSERT INTO run_documents ({', '.join(['run_id', 'seq'] + _RESULT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in range(len(_RESULT_COLUMNS) + 2))})")
_SAVE_DOCUMENT = (f"INSERT OR REPLACE INTO documents ({', '.join(_RECORD_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in _RECORD_COLUMNS)})")


class RunState:
    """One open state database; belongs to one run (or one `report` command), never global."""

    def __init__(self, out_dir: Path, *, must_exist: bool = False) -> None:
        folder = out_dir / STATE_DIR
        if must_exist and not (folder / STATE_FILE).exists():
            raise UsageError(f"{out_dir} has no audiosum state ({STATE_DIR}/{STATE_FILE}); run `audiosum run` first")
        self.path = folder / STATE_FILE
        with no_space_is_disk_full(self.path):
            folder.mkdir(parents=True, exist_ok=True)
            # The feed source asks `document()` from the item-pulling thread. Only share the connection across
            # threads when SQLite is built serialized (threadsafety 3, the default); else keep the default check.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=sqlite3.threadsafety != 3)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db)
        self._seq = 0
        self._last_commit = time.monotonic()
        # Called before each commit: the runner makes the output folder durable first, so a document the
        # committed state calls done always has its renamed files on disk.
        self.before_commit: Callable[[], None] | None = None

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

    def record_result(self, run_id: str, result: DocumentResult) -> None:
        self._seq += 1
        # getattr, not dataclasses.asdict: asdict deep-copies every field and showed up in profiles.
        self._db.execute(_INSERT_RESULT, [run_id, self._seq] + [getattr(result, c) for c in _RESULT_COLUMNS])

    def episodes(self, limit: int) -> list[DocumentRecord]:
        """The newest `limit` documents that are done and have outputs (for the podcast feed)."""
        rows = self._db.execute(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM documents WHERE status = 'done' AND sidecar_name IS NOT NULL"
            " ORDER BY finished_at DESC, doc_id LIMIT ?", (limit,))
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

    def finish_run(self, run_id: str, status: str, abort_reason: str | None = None) -> None:
        self.commit()
        with self._no_space_is_disk_full():
            self._db.execute("UPDATE runs SET ended_at = ?, status = ?, abort_reason = ? WHERE run_id = ?",
                             (time.time(), status, abort_reason, run_id))

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
                   COALESCE(SUM(status = 'skipped'), 0) AS skipped,
                   COALESCE(SUM(status = 'failed'), 0) AS failed,
                   COALESCE(SUM(CASE WHEN status = 'done' THEN duration_s END), 0.0) AS audio_seconds,
                   COALESCE(SUM(prompt_tokens), 0) AS tokens_in,
                   COALESCE(SUM(completion_tokens), 0) AS tokens_out,
                   COALESCE(SUM(prompt_audio_tokens), 0) AS audio_tokens_in,
                   COALESCE(SUM(completion_audio_tokens), 0) AS audio_tokens_out,
                   COALESCE(SUM(requests), 0) AS requests
            FROM run_documents WHERE run_id = ?""", (run_id,)).fetchone()
        totals = dict(row)
        totals["audio_seconds"] = round(totals["audio_seconds"], 3)
        return totals
