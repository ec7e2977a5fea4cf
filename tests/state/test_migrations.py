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
