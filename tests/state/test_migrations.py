"""Migrations are all-or-nothing: one that fails halfway (a full disk, a bug) leaves none of its tables behind, so the
next open applies it cleanly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.state import migrations


def test_a_migration_that_fails_halfway_leaves_nothing_and_the_next_open_applies_it(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch
                                                                                     ) -> None:
    db = sqlite3.connect(tmp_path / "state.sqlite", isolation_level=None)
    real = dict(migrations.MIGRATIONS)["m011_batches_and_warnings"]

    def half(connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE batches (batch_key TEXT PRIMARY KEY)")
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(migrations, "MIGRATIONS", [(n, half if n == "m011_batches_and_warnings" else f)
                                                   for n, f in migrations.MIGRATIONS])
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(db)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "batches" not in tables and "documents" in tables  # the earlier migrations stayed, the failed one did not
    assert "m011_batches_and_warnings" not in migrations.applied_migrations(db)

    monkeypatch.setattr(migrations, "MIGRATIONS", [(n, real if n == "m011_batches_and_warnings" else f)
                                                   for n, f in migrations.MIGRATIONS])
    migrations.migrate(db)
    assert "m011_batches_and_warnings" in migrations.applied_migrations(db)
    assert not db.in_transaction


def test_a_batch_a_server_called_collected_is_polled_again_after_the_upgrade(tmp_path: Path) -> None:
    """Before m012 the server's status went into audiosum's own column: a batch it called 'collected' was never polled
    again and its documents waited for ever. m012 sends such a row (pending lines, so not audiosum's collect) back to
    being polled, and leaves a real collect alone."""
    db = sqlite3.connect(tmp_path / "state.sqlite", isolation_level=None)
    before = [(n, f) for n, f in migrations.MIGRATIONS if n < "m012"]
    for _, function in before:
        function(db)
    for key, status, line in (("k-server", "collected", "pending"), ("k-ours", "collected", "collected"),
                              ("k-queued", "in_progress", "pending")):
        db.execute("INSERT INTO batches (batch_key, run_id, created_at, status, updated_at, batch_id) VALUES "
                   "(?, 'r', 0, ?, 0, ?)", (key, status, f"batch_{key[2:]}"))
        db.execute("INSERT INTO batch_lines (batch_key, doc_id, fingerprint, status) VALUES (?, 'd', 'f', ?)",
                   (key, line))
    dict(migrations.MIGRATIONS)["m012_batch_api_status"](db)
    rows = {key: (status, api) for key, status, api in db.execute("SELECT batch_key, status, api_status FROM batches")}
    assert rows == {"k-server": ("submitted", None), "k-ours": ("collected", None),
                    "k-queued": ("submitted", "in_progress")}
