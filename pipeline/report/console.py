"""What a run tells the person or the machine watching it: a progress bar, plain lines, or JSON events.

Listens to the runner's results and events; never decides anything about the run.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from pipeline.models import DocumentResult, LogFormat


def _clean(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


class ConsoleOutput:
    """One sink per run; `progress=True` draws a rich progress bar (only ever on a terminal)."""

    def __init__(self, *, log_format: LogFormat = "text", quiet: bool = False, progress: bool = False,
                 total: int | None = None, stream: TextIO | None = None) -> None:
        self.log_format = log_format
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.counts = {"done": 0, "degraded": 0, "failed": 0, "skipped": 0}
        self.audio_seconds = 0.0
        self.requests = 0
        self.started = time.monotonic()
        self._progress: Any = None  # a rich Progress, made only on a terminal (rich is imported then)
        self._task: Any = None
        if progress and log_format == "text" and not quiet:
            self._start_progress(total)

    def _start_progress(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]audiosum"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=Console(file=self.stream), transient=False,
        )
        self._task = self._progress.add_task("run", total=total, stats=self._stats())
        self._progress.start()

    def _stats(self) -> str:
        minutes = max((time.monotonic() - self.started) / 60, 1e-9)
        rate = f" {self.requests / minutes:.0f}/min" if self.requests else ""
        degraded = f" degraded {self.counts['degraded']}" if self.counts["degraded"] else ""
        return (f"ok {self.counts['done']}{degraded} fail {self.counts['failed']} skip {self.counts['skipped']} "
                f"{self.audio_seconds / 60:.1f} audio-min{rate}")

    def _json(self, event: str, fields: dict[str, Any]) -> None:
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        line.update({k: _clean(v) for k, v in fields.items()})
        self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def on_result(self, result: DocumentResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status in ("done", "degraded"):
            self.audio_seconds += result.duration_s
        self.requests += result.requests
        if self.log_format == "json":
            self._json("document", {"doc_id": result.doc_id, "status": result.status, "source": result.source,
                                    "reason": result.reason, "error_class": result.error_class,
                                    "duration_s": result.duration_s, "requests": result.requests,
                                    "elapsed_s": result.elapsed_s})
        elif result.status == "failed":
            self._line(f"audiosum: failed {result.doc_id}: {result.reason}")
        elif result.status == "degraded":  # made, but thinner than asked: said even with -q, as a failure is
            self._line(f"audiosum: degraded {result.doc_id}: {result.reason}")
        elif result.status == "waiting":
            if not self.quiet and self._progress is None:
                self._line(f"  waiting {result.doc_id}  ({result.reason})")
        elif not self.quiet and self._progress is None:
            minutes, seconds = divmod(round(result.duration_s), 60)
            self._line(f"  {result.status:<7} {result.doc_id}  ({minutes}:{seconds:02d} audio, "
                       f"{result.elapsed_s:.1f} s)")
        if self._progress is not None:
            self._progress.update(self._task, advance=1, stats=self._stats())

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        if self.log_format == "json":
            self._json(event, fields)
        elif not self.quiet and event in ("retry", "rate_limit_pause", "stopping", "stopping_now"):
            details = ", ".join(f"{k}={v}" for k, v in fields.items())
            self._line(f"  {event:<7} {details}")
        elif not self.quiet and event == "warning":
            self._line(f"audiosum: warning: {fields.get('message', '')}")
        elif not self.quiet and event == "ray_cluster":  # --executor ray: where the work goes, and its dashboard
            self._line(f"audiosum: {fields.get('message', '')}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def summary_line(totals: dict[str, Any], report_path: object) -> str:
    retries = f" · {totals['retries']} retries" if totals.get("retries") else ""
    per_minute = totals.get("cost_per_spoken_minute_usd")
    rate = f" (${per_minute:.4f}/spoken min)" if per_minute else ""
    waiting = f", {totals['waiting']} waiting for a batch" if totals.get("waiting") else ""
    degraded = f", {totals['degraded']} degraded" if totals.get("degraded") else ""
    return (f"audiosum: {totals['done']} done{degraded}, {totals['skipped']} skipped, {totals['failed']} failed"
            f"{waiting} · "
            f"{totals['audio_seconds'] / 60:.1f} audio min · {totals['tokens_in']}/{totals['tokens_out']} tokens "
            f"in/out · ~${totals.get('cost_usd', 0):.4f}{rate}{retries} · {totals.get('wall_seconds', 0.0):.1f} s · "
            f"report {report_path}")
