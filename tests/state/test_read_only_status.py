"""`audiosum status` only reads OUT's state database: no byte of it changes, no -wal or -shm appears beside it, and
a database of another schema is reported, not migrated.

The old database is built here from the migrations up to an older one, with raw SQL: the read-only open under
test is never used to make or check its own input.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from pipeline.errors import StateSchemaMismatch
from pipeline.report.status import status_of
from pipeline.state import STATE_DIR, STATE_FILE, RunState
from pipeline.state.migrations import MIGRATIONS


def _snapshot(database: Path) -> tuple[str, int, list[str]]:
    """The database's bytes (hashed), its mtime and every file beside it."""
    return (hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns,
            sorted(path.name for path in database.parent.iterdir()))


def _folder_with_one_run(out: Path) -> tuple[Path, str]:
    state = RunState(out)  # the writer a run uses: creates and migrates the database
    run_id = state.start_run({"inputs": []})
    state.finish_run(run_id, "finished")
    state.close()
    return out / STATE_DIR / STATE_FILE, run_id


def _old_database(out: Path, last: str) -> Path:
    """A database as an audiosum whose newest migration was `last` left it: WAL mode, one finished run."""
    database = out / STATE_DIR / STATE_FILE
    database.parent.mkdir(parents=True)
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    names = [name for name, _ in MIGRATIONS]
    for name, function in MIGRATIONS[: names.index(last) + 1]:
        function(db)
        db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
    db.execute("INSERT INTO runs (run_id, started_at, ended_at, status, settings_json) "
               "VALUES ('old-run', 1, 2, 'finished', '{}')")
    db.close()
    return database


def _columns(database: Path, table: str) -> list[str]:
    # immutable=1: looking must not create the -wal/-shm files the assertions before this one ruled out.
    db = sqlite3.connect(f"{database.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


def test_status_changes_no_byte_of_the_database(tmp_path: Path) -> None:
    database, run_id = _folder_with_one_run(tmp_path)
    before = _snapshot(database)
    assert before[2] == [STATE_FILE]  # the writer folded its WAL back in: nothing beside the file

    shown = status_of(tmp_path)

    assert run_id in shown and "finished" in shown
    assert _snapshot(database) == before  # same bytes, same mtime, and no -wal or -shm created


def test_an_old_schema_is_reported_not_migrated(tmp_path: Path) -> None:
    database = _old_database(tmp_path, last="m009_owned_outputs")  # before m010 renamed wav_* to main_*
    before = _snapshot(database)
    older = [name for name, _ in MIGRATIONS].index("m009_owned_outputs") + 1  # the migrations it has

    with pytest.raises(StateSchemaMismatch, match=rf"older audiosum \(schema {older}\); run `audiosum run` or "
                                                  r"`audiosum report` to upgrade"):
        status_of(tmp_path)

    assert _snapshot(database) == before
    assert "wav_name" in _columns(database, "documents") and "main_name" not in _columns(database, "documents")


def test_a_newer_schema_is_reported(tmp_path: Path) -> None:
    database, _ = _folder_with_one_run(tmp_path)
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("INSERT INTO migrations (name, applied_at) VALUES ('m999_from_a_later_audiosum', 0)")
    db.close()
    before = _snapshot(database)

    with pytest.raises(StateSchemaMismatch, match=r"newer audiosum \(schema \d+; this one reads schema \d+\)"):
        status_of(tmp_path)

    assert _snapshot(database) == before


def test_status_of_a_folder_without_state_says_so(tmp_path: Path) -> None:
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="no audiosum state"):
        status_of(tmp_path)
    assert not (tmp_path / STATE_DIR).exists()
