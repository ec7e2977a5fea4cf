"""README.md's `run` options and jobs/README.md's keys are generated from the options table: a test fails when they
disagree with it (and so with `audiosum run --help`). `python tests/test_docs.py` rewrites both blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.docs import rendered
from pipeline.settings import RUN_OPTIONS

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"run": REPO / "README.md", "job": REPO / "jobs" / "README.md"}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_option_tables_are_generated_from_the_options_table(name: str) -> None:
    text = TARGETS[name].read_text(encoding="utf-8")
    assert rendered(text, name) == text, f"{TARGETS[name].name} is out of date: run python tests/test_docs.py"


def test_help_lists_every_option_of_the_table_and_no_other() -> None:
    help_text = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    spelled = {flag for option in RUN_OPTIONS for flag in option.flags}
    listed = set()
    for line in help_text.split("Options:", 1)[1].splitlines():
        if line.startswith("  -"):  # an option's own line: its spellings come before the first double space
            spellings = line.strip().split("  ", 1)[0]
            listed |= {part.split()[0] for part in spellings.split(", ")}
    assert listed - {"--job", "-h", "--help"} == spelled


if __name__ == "__main__":
    for table, path in TARGETS.items():
        path.write_text(rendered(path.read_text(encoding="utf-8"), table), encoding="utf-8")
    sys.exit(0)
