"""The run's memory in SQLite (OUT/.audiosum/state.sqlite): runs and per-document results.

Owns all SQL; the schema migrates itself through named, ordered migrations recorded in the database.

The code lives in database.py (the file: where, opening it, a full disk), run_state.py (RunState and its queries),
opening.py (under the run lock, or read-only), migrations.py, batches.py and lock.py; this file re-exports what
other packages use from them.
"""

from __future__ import annotations

from pipeline.models import STATE_DIR
from pipeline.state.database import STATE_FILE
from pipeline.state.migrations import MIGRATIONS, migration  # stay importable from here, as they always were
from pipeline.state.opening import locked_state, open_read_only
from pipeline.state.run_state import COMMIT_EVERY_S, DocumentRecord, RunState

__all__ = [
    "COMMIT_EVERY_S",
    "MIGRATIONS",
    "STATE_DIR",
    "STATE_FILE",
    "DocumentRecord",
    "RunState",
    "locked_state",
    "migration",
    "open_read_only",
]
