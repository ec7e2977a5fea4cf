"""OUT's state database file: where it lives, opened to write (migrated) or only to read, a full disk as DiskFull.

Runs no query on runs or documents (run_state.py) and takes no lock (lock.py); the schema is migrations.py's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import DiskFull, StateSchemaMismatch, is_no_space
from pipeline.state.migrations import MIGRATIONS, SCHEMA_VERSION, applied_migrations, migrate

STATE_FILE = "state.sqlite"

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


def _connect_for_writing(path: Path) -> sqlite3.Connection:
    # The feed source asks `document()` from the item-pulling thread. Only share the connection across threads
    # when SQLite is built serialized (threadsafety 3, the default); else keep the default check.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=sqlite3.threadsafety != 3)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    migrate(db)
    return db


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """The database opened so that nothing on disk changes: no migration, no journal mode, no new files.

    mode=ro alone still creates -wal and -shm beside a WAL database (and cannot remove them). With no -wal there,
    no connection has the database open (the last one folded the WAL back in), so immutable=1 reads the file as it
    is and creates nothing; a run that starts meanwhile writes to a new -wal, not to this file, until its first
    checkpoint. While a run has it open, its -wal and -shm exist and are read as they are.
    """
    wal = path.with_name(path.name + "-wal")
    uri = f"{path.absolute().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA busy_timeout=5000")
        problem = schema_problem(applied_migrations(db))
    except BaseException:
        db.close()
        raise
    if problem is not None:
        db.close()
        raise StateSchemaMismatch(problem)
    return db


def schema_problem(applied: list[str]) -> str | None:
    """Why a database with these migrations applied cannot be read as it is, or None when it is this schema."""
    known = {name for name, _ in MIGRATIONS}
    if any(name not in known for name in applied):
        return (f"state database is from a newer audiosum (schema {len(applied)}; this one reads schema "
                f"{SCHEMA_VERSION}); use that audiosum or a newer one")
    if len(set(applied)) < SCHEMA_VERSION:
        return (f"state database is from an older audiosum (schema {len(set(applied))}); run `audiosum run` or "
                "`audiosum report` to upgrade")
    return None
