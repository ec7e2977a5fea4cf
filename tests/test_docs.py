"""README.md's option tables (`run`, `serve`, `status`, `report`, `jobs`) and jobs/README.md's keys are generated
from their one declaration each (pipeline/settings.py's options table, the click commands): tests fail when a file
is out of date, or when a table and what `audiosum COMMAND --help` prints disagree. `python tests/test_docs.py`
rewrites every block."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the checkout's pipeline/, never a copy installed earlier
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from pipeline.cli import cli  # noqa: E402
from pipeline.docs import COMMANDS, MACHINE_DEFAULTS, MISSING_HELP, rendered  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
JOBS_README = REPO / "jobs" / "README.md"
TARGETS = {"run": README, "job": JOBS_README, **{command: README for command in COMMANDS}}
NOT_IN_TABLES = {"-h", "--help", "--job"}  # --job is described in the prose under run's table


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_option_tables_are_generated_from_their_declaration(name: str) -> None:
    text = TARGETS[name].read_text(encoding="utf-8")
    assert rendered(text, name) == text, f"{TARGETS[name].name} is out of date: run python tests/test_docs.py"


def _help_options(command: str) -> dict[str, str | None]:
    """Each option `audiosum COMMAND --help` lists, by every spelling -> the default it shows (None: shows none)."""
    help_text = CliRunner().invoke(cli, [command, "--help"], terminal_width=1000).output
    shown: dict[str, str | None] = {}
    for line in help_text.split("Options:", 1)[1].splitlines():
        if not line.startswith("  -"):  # an option's own line: its spellings come before the first double space
            continue
        spellings = line.strip().split("  ", 1)[0]
        default = re.search(r"\[(?:env var: [^;\]]+; )?default: ([^;\]]+)", line)
        for part in spellings.split(", "):
            shown[part.split()[0]] = default.group(1).strip() if default else None
    return shown


def _readme_rows(command: str) -> dict[str, str]:
    """Each option in README's generated table of COMMAND, by every spelling -> its default cell."""
    text = README.read_text(encoding="utf-8")
    block = re.search(rf"<!-- options:{command} -->\n(.*?)<!-- /options:{command} -->", text, re.S)
    assert block, f"README.md has no options:{command} block"
    rows: dict[str, str] = {}
    for line in block.group(1).splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`-"):
            for flag in re.findall(r"`(-[^`]+)`", cells[0]):
                rows[flag] = cells[1]
    return rows


@pytest.mark.parametrize("command", ["run", *COMMANDS])
def test_the_readme_table_and_help_agree(command: str) -> None:
    """Every option --help lists is in README's table with the same default, and the table lists no other."""
    shown, documented = _help_options(command), _readme_rows(command)
    assert set(documented) == set(shown) - NOT_IN_TABLES, f"README's {command} table and --help list different options"
    machine = {f"--{name.replace('_', '-')}" for (cmd, name) in MACHINE_DEFAULTS if cmd == command}
    for flag, default in shown.items():
        if flag in NOT_IN_TABLES or default is None or flag in machine:
            continue
        assert default in documented[flag], f"audiosum {command} {flag}: --help says {default}, README says " \
                                            f"{documented[flag]!r}"


def test_a_help_stand_in_is_used_only_while_the_command_has_no_help() -> None:
    for (command, name), _ in MISSING_HELP.items():
        param = next(p for p in cli.commands[command].params if p.name == name)
        assert not getattr(param, "help", None), f"{command} {name} has help now: delete its MISSING_HELP row"


def test_every_shipped_job_is_listed_in_jobs_readme() -> None:
    listed = JOBS_README.read_text(encoding="utf-8")
    for job in sorted((REPO / "jobs").glob("*.toml")):
        assert f"`{job.name}`" in listed, f"jobs/README.md does not describe {job.name}"


if __name__ == "__main__":
    for table, path in TARGETS.items():
        path.write_text(rendered(path.read_text(encoding="utf-8"), table), encoding="utf-8")
    sys.exit(0)
