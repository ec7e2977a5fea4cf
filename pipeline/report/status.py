"""`audiosum status OUT`: a one-screen text summary of an output folder's recent runs, read from state.

Read-only: it takes no lock, migrates nothing and writes nothing (a database of another schema is reported).
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.state import STATE_DIR, RunState, open_read_only
from pipeline.state.lock import lock_holder


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "-"


def status_of(out_dir: Path, limit: int = 8) -> str:
    """The status screen of OUT, read through a read-only open; UsageError when OUT has no state, and
    StateSchemaMismatch (a UsageError) when its database is an older or newer schema than this audiosum's."""
    state = open_read_only(out_dir)
    try:
        return render_status(state, limit, holder=lock_holder(out_dir / STATE_DIR))
    finally:
        state.close()


def render_status(state: RunState, limit: int = 8, holder: dict[str, object] | None = None) -> str:
    """`holder` is who holds the run lock now (None: nobody): a run recorded as running without one was killed."""
    lines = [f"{'run':<24} {'status':<12} {'started':<16} {'wall':>7} {'done':>6} {'degr':>6} {'skip':>6} "
             f"{'fail':>6} {'audio min':>9}"]
    gone = False
    for index, row in enumerate(state.recent_runs(limit)):
        totals = state.totals(row["run_id"])
        shown = row["status"]
        if shown == "running" and (holder is None or index > 0):
            shown, gone = "crashed*", True  # its process is gone; the next run records it as crashed
        wall = f"{(row['ended_at'] - row['started_at']):.0f}s" if row["ended_at"] else "-"
        lines.append(f"{row['run_id']:<24} {shown:<12} {_when(row['started_at']):<16} {wall:>7} "
                     f"{totals['done']:>6} {totals['degraded']:>6} {totals['skipped']:>6} {totals['failed']:>6} "
                     f"{totals['audio_seconds'] / 60:>9.1f}")
    counts = state.document_counts()
    if gone:
        lines.append("* recorded as running, but no process holds the folder's lock (killed, or the machine "
                     "stopped); the next run marks it crashed and finishes the rest")
    elif holder is not None:
        lines.append(f"running now: pid {holder.get('pid', '?')}, started {holder.get('started', '?')}")
    lines.append("")
    lines.append("documents: " + (", ".join(f"{n} {status}" for status, n in counts.items()) or "none yet"))
    lines.extend(_batch_lines(state))
    return "\n".join(lines)


def _batch_lines(state: RunState) -> list[str]:
    """--batch: the submissions not yet collected, with the API's counts and audiosum's line counts."""
    pending = state.batches.unfinished()
    if not pending:
        return []
    lines = ["", f"batches pending: {len(pending)} (the next run polls them and speaks what is done)"]
    for record in pending:
        api = record.counts
        counts = (f"{api.get('completed', 0)}/{api.get('total', 0)} completed, {api.get('failed', 0)} failed"
                  if api else "no counts yet")
        documents = sum(state.batches.line_counts(record.batch_key).values())
        # The API's status once it has one (checked against Batch.status's values when it came), else audiosum's.
        shown = record.api_status or record.status
        lines.append(f"  {record.batch_id or record.batch_key:<32} {shown:<12} submitted "
                     f"{_when(record.created_at)}  {counts}  ({documents} documents)")
    return lines
