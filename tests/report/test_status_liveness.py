"""`audiosum status` tells a live run from a killed one: the lock's holder is looked up, not the last row believed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from peers import api_env, running_server
from runs import SAMPLE_INPUTS, run_cli, until

HANG_S = 60.0  # only a guard against a hang: every wait below ends on an event


def _run_row_status(out: Path) -> str | None:
    database = out / ".audiosum" / "state.sqlite"
    if not database.exists():
        return None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute("SELECT status FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None  # the run is still creating it
    return row[0] if row else None


def test_status_shows_a_live_run_as_running_and_a_killed_one_as_crashed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_server("--engine", "tone", "--latency", "120") as server:  # every answer waits: the run stays live
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(SAMPLE_INPUTS / "notes"), "-o",
                                    str(out)], env=api_env(server), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            until(lambda: _run_row_status(out) == "running", "the run recording itself as running",
                  process=process, deadline_s=HANG_S)
            live = run_cli("status", str(out))
            assert live.exit_code == 0, live.stderr
            assert f"running now: pid {process.pid}" in live.stdout and "crashed" not in live.stdout

            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=HANG_S)
            dead = run_cli("status", str(out))
            assert dead.exit_code == 0, dead.stderr
            assert "crashed*" in dead.stdout and "no process holds the folder's lock" in dead.stdout
            assert "running now" not in dead.stdout
            assert _run_row_status(out) == "running"  # status wrote nothing: the next run records the crash
        finally:
            if process.poll() is None:
                process.kill()
