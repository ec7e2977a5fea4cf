"""The run report: report.json for machines and report.html for people, both rebuilt from state.

Reads state and writes through outputs.atomic_write; never talks to providers.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import report_html
from pipeline.costs import cost_usd, prices_for
from pipeline.outputs import atomic_write, confined_path, write_json
from pipeline.state import RunState

JSON_NAME = "report.json"
HTML_NAME = "report.html"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def build(state: RunState, run_id: str) -> dict[str, Any]:
    run = state.run(run_id)
    if run is None:
        raise KeyError(run_id)
    totals = state.totals(run_id)
    ended = run["ended_at"]
    totals["wall_seconds"] = round((ended or run["started_at"]) - run["started_at"], 3)
    settings = json.loads(run["settings_json"])
    prices = prices_for(settings.get("provider", ""), settings.get("model", ""), settings.get("price_overrides"))
    totals["cost_usd"] = round(cost_usd(
        prices, text_in=totals["tokens_in"] - totals["audio_tokens_in"], audio_in=totals["audio_tokens_in"],
        text_out=totals["tokens_out"] - totals["audio_tokens_out"], audio_out=totals["audio_tokens_out"]), 6)
    totals["retries_by_cause"] = state.retries_by_cause(run_id)
    totals["retries"] = sum(totals["retries_by_cause"].values())
    return {
        "run_id": run_id,
        "status": run["status"],
        "started_at": _iso(run["started_at"]),
        "ended_at": _iso(ended),
        "settings": settings,
        "totals": totals,
        "documents": [asdict(result) for result in state.results(run_id)],
    }


def write(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    json_path, html_path = confined_path(out_dir, JSON_NAME), confined_path(out_dir, HTML_NAME)
    write_json(json_path, report)
    atomic_write(html_path, report_html.render(report).encode("utf-8"))
    return json_path, html_path
