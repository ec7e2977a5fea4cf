"""The state database's schema: named, ordered migrations, each applied once and recorded in the database.

Owns the schema's history only; opening the database and every query live in pipeline/state/__init__.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

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


@migration
def m011_batches_and_warnings(db: sqlite3.Connection) -> None:
    # A run's warning events (a model shutting down soon, an option the engine ignores), for report.json.
    db.execute("ALTER TABLE runs ADD COLUMN warnings_json TEXT")
    # --batch: each Batch API submission (recorded before its file is uploaded, its file id before the batch is
    # created, so a kill between the steps leaves nothing the next run cannot find) and each document line in it.
    db.execute("""
        CREATE TABLE batches (
            batch_key TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            file_id TEXT,
            batch_id TEXT,
            status TEXT NOT NULL,
            counts_json TEXT,
            updated_at REAL NOT NULL,
            note TEXT
        )""")
    db.execute("""
        CREATE TABLE batch_lines (
            batch_key TEXT NOT NULL REFERENCES batches(batch_key),
            doc_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,
            text TEXT,
            usage_json TEXT,
            request_id TEXT,
            error TEXT,
            PRIMARY KEY (batch_key, doc_id)
        )""")
    db.execute("CREATE INDEX batch_lines_by_doc ON batch_lines (doc_id)")


@migration
def m012_batch_api_status(db: sqlite3.Connection) -> None:
    # A batch's status at the API is the server's word, kept apart from audiosum's own lifecycle (queued, uploaded,
    # submitted, collected, abandoned): a server that answers "collected" or "queued" cannot end or restart it.
    db.execute("ALTER TABLE batches ADD COLUMN api_status TEXT")
    api_statuses = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                    "cancelled")
    marks = ", ".join("?" * len(api_statuses))
    # Rows with a batch id held the server's status (whatever it said) unless this audiosum had collected them.
    db.execute(f"UPDATE batches SET api_status = CASE WHEN status IN ({marks}) THEN status END, status = 'submitted' "
               "WHERE batch_id IS NOT NULL AND status != 'collected'", api_statuses)
    # A 'collected' that still has pending lines was a server's answer ("collected"), not audiosum's: the old collect
    # failed every line it did not answer. It goes back to being polled.
    db.execute("UPDATE batches SET status = 'submitted', api_status = NULL WHERE status = 'collected' AND batch_id IS "
               "NOT NULL AND EXISTS (SELECT 1 FROM batch_lines l WHERE l.batch_key = batches.batch_key AND "
               "l.status = 'pending')")


@migration
def m013_degraded_retry(db: sqlite3.Connection) -> None:
    # A degraded document (made, but thinner than asked) whose cause may pass (a fetch that failed) is made again
    # by the next run; one whose cause stays (captions estimated for a language the recogniser cannot hear) is not.
    db.execute("ALTER TABLE documents ADD COLUMN degraded_retry INTEGER NOT NULL DEFAULT 0")


def migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    for name, function in MIGRATIONS:
        if name in done:
            continue
        # One transaction a migration (SQLite's DDL is transactional): one that fails halfway, say on a full disk,
        # leaves no table of it behind to break the next attempt. The connection is in autocommit mode, where
        # `with db:` alone would not make one.
        db.execute("BEGIN")
        try:
            function(db)
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


SCHEMA_VERSION = len(MIGRATIONS)  # the schema this audiosum writes: one version per migration


def applied_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in a database, read only (none when it has no migrations table)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone() is None:
        return []
    return [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY name")]
