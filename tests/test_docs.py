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
from pipeline.settings import GROUPS, OPTIONS_BY_KEY, RUN_OPTIONS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
JOBS_README = REPO / "jobs" / "README.md"
TARGETS = {"run": README, "job": JOBS_README, **{command: README for command in COMMANDS}}
NOT_IN_TABLES = {"-h", "--help"}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_option_tables_are_generated_from_their_declaration(name: str) -> None:
    text = TARGETS[name].read_text(encoding="utf-8")
    assert rendered(text, name) == text, f"{TARGETS[name].name} is out of date: run python tests/test_docs.py"


def _help_sections(command: str) -> list[tuple[str, list[str]]]:
    """`audiosum COMMAND --help`'s sections in order: each heading (`Options`, or run's groups) with the lines of its
    options, one line per option (a terminal wide enough that no help text wraps)."""
    help_text = CliRunner().invoke(cli, [command, "--help"], terminal_width=1000).output
    sections: list[tuple[str, list[str]]] = []
    for line in help_text.splitlines():
        heading = re.fullmatch(r"([A-Z][^:]*):", line)
        if heading:
            sections.append((heading.group(1), []))
        elif sections and line.startswith("  -"):  # an option's own line, not the description above the sections
            sections[-1][1].append(line)
    return sections


def _flags(option_line: str) -> list[str]:
    """Every spelling on an option's help line: they come before the first double space."""
    return [part.split()[0] for part in option_line.strip().split("  ", 1)[0].split(", ")]


def _help_options(command: str) -> dict[str, str | None]:
    """Each option `audiosum COMMAND --help` lists, by every spelling -> the default it shows (None: shows none)."""
    shown: dict[str, str | None] = {}
    for _, lines in _help_sections(command):
        for line in lines:
            default = re.search(r"\[(?:env var: [^;\]]+; )?default: ([^;\]]+)", line)
            for flag in _flags(line):
                shown[flag] = default.group(1).strip() if default else None
    return shown


def _readme_sections(path: Path, block_name: str, heading: str) -> dict[str, list[str]]:
    """The section titles inside one generated block (lines that fullmatch `heading`, the title its group) -> the
    first cell of each table row under it (options or keys)."""
    block = re.search(rf"<!-- options:{block_name} -->\n(.*?)<!-- /options:{block_name} -->",
                      path.read_text(encoding="utf-8"), re.S)
    assert block, f"{path.name} has no options:{block_name} block"
    sections: dict[str, list[str]] = {}
    for line in block.group(1).splitlines():
        title = re.fullmatch(heading, line)
        if title:
            sections[title.group(1)] = []
        elif sections and line.startswith("| `"):
            sections[list(sections)[-1]].append(line.split("|")[1].strip())
    return sections


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


def test_run_help_is_in_sections_in_the_declared_order() -> None:
    """`run --help` shows its options in the options table's groups, in GROUPS order, the options a first run needs
    (the job file, the output folder) first; only --help is left to click's "Other options"."""
    sections = _help_sections("run")
    assert [title for title, _ in sections] == [*GROUPS.values(), "Other options"]
    first = [flag for line in sections[0][1] for flag in _flags(line)]
    assert first[:3] == ["--job", "-o", "--out"]
    assert [flag for line in sections[-1][1] for flag in _flags(line)] == ["-h", "--help"]
    for title, lines in sections[:-1]:
        for line in lines:
            option = next((o for o in RUN_OPTIONS if _flags(line)[-1] in o.flags), None)
            assert option is None or GROUPS[option.group] == title, f"{_flags(line)} is shown under {title}"


def test_the_readme_tables_follow_the_help_sections() -> None:
    """README's run tables sit under the same headings as the sections of `run --help`, each holding the same options,
    and jobs/README's keys under the heading of their option's section."""
    in_help = {title: [_flags(line)[-1] for line in lines] for title, lines in _help_sections("run")
               if title != "Other options"}
    in_readme = {title: [re.findall(r"`(-[^`]+)`", cell)[-1] for cell in cells]
                 for title, cells in _readme_sections(README, "run", r"\*\*(.+)\*\*").items()}
    assert in_readme == in_help
    section_of = {flag: title for title, flags in in_help.items() for flag in flags}
    for title, cells in _readme_sections(JOBS_README, "job", r"### (.+)").items():
        for cell in cells:
            option = OPTIONS_BY_KEY[cell.strip("`")]
            if option.flags:
                assert section_of[option.flags[-1]] == title, f"job key {option.key} is under {title}"


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
