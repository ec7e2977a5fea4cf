"""The dry run's time for the offline engine comes from this folder's own earlier runs, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runs import SAMPLE_INPUTS, child_env, run_cli


@pytest.mark.slow  # one real offline run (Piper speaks), then two dry runs
def test_the_offline_dry_run_estimates_time_from_the_folder_s_measured_speed(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text((SAMPLE_INPUTS / "notes" / "short-reminder.txt").read_text())
    out = tmp_path / "out"

    fresh = run_cli("run", str(notes), "-o", str(out), "--dry-run", env=child_env())
    assert fresh.exit_code == 0, fresh.stderr
    assert "no earlier offline run in this folder" in json.loads((out / "dry-run.json").read_text())[
        "dry_run"]["limits_note"]

    real = run_cli("run", str(notes), "-o", str(out), env=child_env())
    assert real.exit_code == 0, real.stderr
    totals = json.loads((out / "report.json").read_text())["totals"]
    speed = totals["audio_seconds"] / totals["wall_seconds"]  # the oracle: the real run's own report

    (notes / "b.txt").write_text((SAMPLE_INPUTS / "notes" / "short-reminder.txt").read_text() + "\nA new line.\n")
    planned = run_cli("run", str(notes), "-o", str(out), "--dry-run", env=child_env())
    assert planned.exit_code == 0, planned.stderr
    plan = json.loads((out / "dry-run.json").read_text())["dry_run"]
    assert "as measured in this folder's last 1 offline run" in plan["limits_note"]
    measured = float(plan["limits_note"].split("offline engine at ")[1].split("x")[0])
    assert measured == pytest.approx(speed, rel=0.25)  # state's wall clock spans a little more than the report's
    assert plan["minutes_at_limits"] == pytest.approx(plan["audio_minutes"] / measured, rel=0.05, abs=0.01)
