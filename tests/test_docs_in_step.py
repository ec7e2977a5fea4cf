"""The facts a newcomer reads in three places agree (issue 27, item 7): the README's list of what a folder is
searched for and the error an unsupported input gets both name exactly the suffixes audiosum reads; every cron line
in the README is the one its job file's comment gives; every exit code the README documents is one the code uses,
and every one the code uses is documented; a shipped job's model is the default model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from runs import child_env, run_cli

from pipeline import cli, runner
from pipeline.models import DEFAULT_MODEL
from pipeline.sources.documents import DOCUMENT_SUFFIXES

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SUFFIX = re.compile(r"`(\.[a-z0-9]+)`")


def test_the_readme_names_every_suffix_a_folder_is_searched_for() -> None:
    folder_line = README[README.index("- a folder, searched recursively"):README.index("- a single such file")]
    assert set(SUFFIX.findall(folder_line)) == set(DOCUMENT_SUFFIXES)


def test_the_unsupported_input_error_names_the_same_suffixes(tmp_path: Path) -> None:
    odd = tmp_path / "notes.pages"
    odd.write_text("x")
    result = run_cli("run", str(odd), "-o", str(tmp_path / "out"), env=child_env())
    assert result.exit_code == 2
    named = set(re.findall(r"(\.[a-z0-9]+)", result.stderr.split("is not a folder", 1)[1]))
    assert set(DOCUMENT_SUFFIXES) <= named  # and the manifest and feed suffixes


def test_every_cron_line_in_the_readme_is_its_job_files_own() -> None:
    lines = re.findall(r"^(\d+ \d+ \* \* \*  cd \S+ && \.venv/bin/audiosum run --job (jobs/\S+\.toml).*)$", README,
                       re.MULTILINE)
    assert lines, "the README has cron lines"
    for line, job in lines:
        comment = (REPO / job).read_text(encoding="utf-8")
        minute_hour = line.split("  ", 1)[0]
        assert f"#   {minute_hour}  cd " in comment, f"{job}: its comment's schedule is not {minute_hour!r}"


def test_the_exit_codes_documented_are_the_ones_used() -> None:
    table = README[README.index("### Exit codes"):]
    table = table[:table.index("\n\n", table.index("| --- |"))]
    documented = {int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.MULTILINE)
                  for code in row.split("/")}
    used = {0, cli.EXIT_CRASH, cli.EXIT_USAGE, cli.EXIT_LOCKED, *runner.EXIT_FOR_SIGNAL.values()}
    assert documented == used


def test_shipped_jobs_use_the_default_model() -> None:
    for path in sorted((REPO / "jobs").glob("*.toml")):
        model = tomllib.loads(path.read_text(encoding="utf-8")).get("model")
        assert model in (None, DEFAULT_MODEL), f"{path.name} names {model!r}, the default is {DEFAULT_MODEL!r}"
