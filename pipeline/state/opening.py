"""How a command opens OUT's state: under the run lock to run, or read-only, with no lock, to look.

Runs no SQL itself (run_state.py) and holds no lock logic of its own (lock.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.models import STATE_DIR
from pipeline.state.lock import RunLock
from pipeline.state.run_state import RunState


def open_read_only(out_dir: Path) -> RunState:
    """OUT's state database for reading only (`audiosum status`): takes no lock, migrates nothing and changes no
    byte on disk. UsageError when there is none; StateSchemaMismatch when it is an older or newer schema."""
    return RunState(out_dir, read_only=True)


@contextlib.contextmanager
def locked_state(out_dir: Path, *, must_exist: bool = False,
                 before_open: Callable[[], object] | None = None) -> Iterator[RunState]:
    """OUT's state database opened (and migrated) under the run lock; closed, then the lock released.

    before_open runs under the lock first (the runner removes stale temp files: they may be what fills the disk).
    """
    with RunLock(out_dir / STATE_DIR):
        if before_open is not None:
            before_open()
        state = RunState(out_dir, must_exist=must_exist)
        try:
            yield state
        finally:
            state.close()
