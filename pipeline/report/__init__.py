"""The run report: report.json for machines and report.html for people, both rebuilt from state.

Reads state and writes through outputs.atomic_write; never talks to providers.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.models import DocumentResult
from pipeline.outputs import atomic_writer, confined_path
from pipeline.plan.costs import cost_usd, prices_for_run
from pipeline.redact import visible
from pipeline.report import page as report_html
from pipeline.state import RunState

JSON_NAME = "report.json"
HTML_NAME = "report.html"
# A dry run's plan has files of its own, so report.* always describe the last real run.
DRY_RUN_ID = "dry-run"
DRY_RUN_JSON_NAME = f"{DRY_RUN_ID}.json"
DRY_RUN_HTML_NAME = f"{DRY_RUN_ID}.html"
DRY_RUN_NAMES = (DRY_RUN_JSON_NAME, DRY_RUN_HTML_NAME)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def build(state: RunState, run_id: str) -> dict[str, Any]:
    run = state.run(run_id)
    if run is None:
        raise KeyError(run_id)
    totals = state.totals(run_id)
    ended = run["ended_at"]
    totals["wall_seconds"] = round((ended or run["started_at"]) - run["started_at"], 3)
    settings = json.loads(run["settings_json"])
    prices = prices_for_run(settings)
    totals["cost_usd"] = round(cost_usd(
        prices, text_in=totals["tokens_in"] - totals["audio_tokens_in"], audio_in=totals["audio_tokens_in"],
        text_out=totals["tokens_out"] - totals["audio_tokens_out"], audio_out=totals["audio_tokens_out"]), 6)
    spoken_minutes = totals["audio_seconds"] / 60
    totals["cost_per_spoken_minute_usd"] = round(totals["cost_usd"] / spoken_minutes, 6) if spoken_minutes else None
    # An "ok" attempt is never a retry. State no longer flags successful part requests as retried, but runs
    # recorded before that fix still have them.
    totals["retries_by_cause"] = {cause: count for cause, count in state.retries_by_cause(run_id).items()
                                  if cause != "ok"}
    totals["retries"] = sum(totals["retries_by_cause"].values())
    built: dict[str, Any] = {
        "run_id": run_id,
        "status": run["status"],
        "started_at": _iso(run["started_at"]),
        "ended_at": _iso(ended),
        "settings": settings,
        "totals": totals,
    }
    if run["abort_reason"]:
        built["abort_reason"] = run["abort_reason"]
    if run["warnings_json"]:
        built["warnings"] = json.loads(run["warnings_json"])
    return built


def _row(result: DocumentResult) -> dict[str, Any]:
    row = asdict(result)
    meta = row.pop("meta_json")
    row["meta"] = json.loads(meta) if meta else None
    followups = row.pop("followups_json")
    row["followups"] = json.loads(followups) if followups else None
    if row.get("reason"):
        # One line, whatever a file name or a server put in it (CR, ESC...); rows recorded before the runner
        # flattened reasons are rebuilt by `audiosum report` through here too.
        row["reason"] = visible(row["reason"], one_line=True)
    return row


def write(out_dir: Path, report: dict[str, Any], state: RunState) -> tuple[Path, Path]:
    """Write both files, streaming the per-document rows from state so memory does not grow with the run."""
    run_id = report["run_id"]
    json_path, html_path = confined_path(out_dir, JSON_NAME), confined_path(out_dir, HTML_NAME)
    with atomic_writer(json_path, ours=state.owns) as handle:
        head = json.dumps(report, indent=2, ensure_ascii=False)
        handle.write(head[:-2].encode("utf-8") + b',\n  "documents": [')
        for index, result in enumerate(state.results(run_id)):
            prefix = b"\n    " if index == 0 else b",\n    "
            handle.write(prefix + json.dumps(_row(result), ensure_ascii=False).encode("utf-8"))
        handle.write(b"\n  ]\n}\n")
    with atomic_writer(html_path, ours=state.owns) as handle:
        failed = (_row(r) for r in state.results(run_id, status="failed"))
        others = (_row(r) for r in state.results(run_id, status="failed", exclude=True))
        for part in report_html.render_parts(report, failed, others, state.totals(run_id)["failed"]):
            handle.write(part.encode("utf-8"))
    return json_path, html_path


def write_dry_run(out_dir: Path, report: dict[str, Any], state: RunState, names: set[str]) -> tuple[Path, ...]:
    """dry-run.json (the run's settings and its `dry_run` plan) and dry-run.html, those of them in `names` (claimed
    by the caller); a dry run records no documents. Returns the paths written."""
    written: list[Path] = []
    if DRY_RUN_JSON_NAME in names:
        json_path = confined_path(out_dir, DRY_RUN_JSON_NAME)
        with atomic_writer(json_path, ours=state.owns) as handle:
            handle.write((json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        written.append(json_path)
    if DRY_RUN_HTML_NAME in names:
        html_path = confined_path(out_dir, DRY_RUN_HTML_NAME)
        with atomic_writer(html_path, ours=state.owns) as handle:
            for part in report_html.render_parts(report, iter(()), iter(()), 0):
                handle.write(part.encode("utf-8"))
        written.append(html_path)
    return tuple(written)
