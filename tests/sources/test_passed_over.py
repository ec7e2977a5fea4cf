"""Files the run will not read are not invisible (issue 27, item 3): a folder's files of kinds this version does not
read are counted by kind and named by the dry run and the run (console, JSON log, report), without failing it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from runs import child_env, run_cli

from pipeline import sources


def _folder(tmp_path: Path, *, with_text: bool = True) -> Path:
    folder = tmp_path / "in"
    (folder / "deeper").mkdir(parents=True)
    if with_text:
        (folder / "a.txt").write_text("The ferry runs twice a day. Tickets cost four pounds.\n")
    for name in ("b.pages", "deeper/c.pages", "d.key", "Makefile", ".hidden.pages"):
        (folder / name).write_text("x")
    return folder


def test_the_walk_counts_what_it_passes_over_by_kind(tmp_path: Path) -> None:
    passed: Counter[str] = Counter()
    items = list(sources.iter_inputs((str(_folder(tmp_path)),), passed_over=passed))
    assert [item.id for item in items] == ["a"]
    assert passed == Counter({".pages": 2, ".key": 1, "(no extension)": 1})  # hidden files are not counted
    assert sources.passed_over_note(passed) == (
        "4 files of types this version does not read: .pages (2), (no extension), .key (passed over)")
    assert sources.passed_over_note(Counter()) is None


def test_the_dry_run_names_what_it_would_pass_over(tmp_path: Path) -> None:
    result = run_cli("run", str(_folder(tmp_path)), "-o", str(tmp_path / "out"), "--dry-run", env=child_env())
    assert result.exit_code == 0, result.stderr
    assert "4 files of types this version does not read: .pages (2), (no extension), .key" in result.stdout
    plan = json.loads((tmp_path / "out" / "dry-run.json").read_text())["dry_run"]
    assert plan["passed_over"].startswith("4 files of types this version does not read")



def test_the_run_says_what_it_passed_over_and_still_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(_folder(tmp_path, with_text=False)), "-o", str(out), "--log-format", "json",
                     env=child_env())
    assert result.exit_code == 0, result.stderr
    warnings = [e for e in map(json.loads, result.stderr.splitlines()) if e["event"] == "warning"]
    assert [w["kind"] for w in warnings] == ["passed_over"], warnings
    assert ".pages (2)" in warnings[0]["message"]
    report = json.loads((out / "report.json").read_text())
    assert any(w["kind"] == "passed_over" for w in report["warnings"])


def test_a_suffix_with_a_terminal_escape_is_shown_not_acted_on() -> None:
    note = sources.passed_over_note(Counter({".\x1b[2Jx": 1}))
    assert note is not None and "\x1b" not in note and "\\x1b[2Jx" in note
