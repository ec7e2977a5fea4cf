"""The option tables of README.md and jobs/README.md, rendered from their one declaration each.

`run` and the job keys come from the options table (pipeline/settings.py); `serve`, `status`, `report` and `jobs`
from their click commands' parameters (pipeline/cli.py), so neither is ever written by hand. Pure text, no I/O:
`rendered(text, name)` replaces the block between `<!-- options:NAME -->` and `<!-- /options:NAME -->`.
tests/test_docs.py fails when a file is out of date, and `python tests/test_docs.py` rewrites the blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import click

from pipeline.settings import OPTIONS_BY_KEY, RUN_OPTIONS, RunOption, grouped, metavar


def _range(option: RunOption) -> str:
    if option.low is not None and option.high is not None:
        return f", {_number(option.low)}..{_number(option.high)}"
    if option.low is not None:
        return f", >= {_number(option.low)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _job_type(option: RunOption) -> str:
    """The TOML a key takes: the forms its row declares besides its kind's own (a number, a boolean, an array), then
    its kind's own."""
    if option.kind == "choice":
        own = " or ".join(f'`"{choice}"`' for choice in option.choices)
    elif option.kind == "str" and option.toml and option.metavar:
        own = f"string ({option.metavar.replace('|', '/')})"
    else:
        own = {"str": "string", "int": "integer", "number": "number", "str_list": "array of strings",
               "flag": "`true` or `false`", "date": "date (`2026-11-01`)"}[option.kind] + _range(option)
    others = [form.name for form in option.toml]
    return f"{', '.join(others)} or {own}" if others else own


def _default(option: RunOption) -> str:
    bracket = re.search(r"\[default: ([^\]]+)\]", option.help)
    if bracket:
        return bracket.group(1)
    if option.key in ("inputs", "out"):
        return "**required**" if option.key == "out" else "**required** (or `feeds`)"
    if option.default is None or option.default is False or option.default == ():
        return ""
    return f"`{option.default}`"


def _meaning(option: RunOption) -> str:
    meaning = re.sub(r"\s*\[default: [^\]]+\]", "", option.help)
    if ("run", option.key) in WARNINGS:
        meaning += " " + WARNINGS[("run", option.key)]
    return meaning.replace("|", "\\|")


def run_table() -> str:
    """One table per section of `run --help` (settings.GROUPS), each under its title in bold (README's own sections
    "Feeds" and "Rate limits and retries" keep their anchors); the options run declares itself (--job) head the
    first, as in the help."""
    own = [param for param in _command("run").params
           if isinstance(param, click.Option) and not param.hidden and param.name not in OPTIONS_BY_KEY]
    blocks = []
    for index, (title, members) in enumerate(grouped(tuple(option for option in RUN_OPTIONS if option.flags))):
        rows = [f"**{title}**", "", "| option | default | meaning |", "| --- | --- | --- |"]
        rows += [_command_row("run", param) for param in (own if index == 0 else ())]
        for option in members:
            spelled = ", ".join(f"`{flag}`" for flag in option.flags)
            shown = metavar(option)
            spelled += f" {shown.replace('|', '/')}" if shown else ""
            rows.append(f"| {spelled} | {_default(option)} | {_meaning(option)} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def job_table() -> str:
    """The job keys in the same sections as `run --help`, each under its heading."""
    blocks = []
    for title, members in grouped(tuple(option for option in RUN_OPTIONS if option.in_job)):
        rows = [f"### {title}", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        rows += [f"| `{option.key}` | {_job_type(option)} | {_default(option)} | {_meaning(option)} |"
                 for option in members]
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


# Commands whose options are declared only by their click command (run's come from the options table above).
COMMANDS = ("serve", "status", "report", "jobs")

# Meanings for options whose click declaration has no help text yet: (command, parameter name) -> meaning. Give the
# option its help in pipeline/cli.py and delete the row here (tests/test_docs.py fails while both exist).
MISSING_HELP: dict[tuple[str, str], str] = {}

# Defaults computed from the machine when the command is declared: the table says how, not this machine's value.
MACHINE_DEFAULTS: dict[tuple[str, str], str] = {
    ("serve", "workers"): "2, or 1 on a one-core machine",
}

# Where a default bites, said next to the option as well as in the prose.
WARNINGS: dict[tuple[str, str], str] = {
    ("run", "podcast_url"): "**The default is this machine's loopback address: a podcast app on another device cannot "
                         "reach the feed's files until you set it.**",
}


def _command(name: str) -> click.Command:
    from pipeline.cli import cli  # the command line is the declaration; imported only when a table is rendered

    return cli.commands[name]


def _metavar(param: click.Option) -> str:
    if param.is_flag:
        return ""
    if param.metavar:
        return param.metavar
    if isinstance(param.type, click.Choice):
        return "/".join(str(choice) for choice in param.type.choices)
    if isinstance(param.type, (click.IntRange, click.FloatRange)):
        return "N" if isinstance(param.type, click.IntRange) else "NUMBER"
    return {"integer": "N", "float": "NUMBER"}.get(param.type.name, param.type.name.upper())


def _range_text(param: click.Option) -> str:
    if not isinstance(param.type, (click.IntRange, click.FloatRange)):
        return ""
    low, high = param.type.min, param.type.max
    if low is not None and high is not None:
        return f" ({_number(low)}..{_number(high)})"
    if low is not None:
        return f" (> {_number(low)})" if param.type.min_open else f" (>= {_number(low)})"
    return ""


def command_default(command: str, param: click.Option) -> str:
    """The default cell of one option: what `--help` shows, or the rule behind a machine-dependent one."""
    if (command, param.name) in MACHINE_DEFAULTS:
        return MACHINE_DEFAULTS[(command, str(param.name))]
    if param.is_flag or not param.show_default:
        return ""
    value = param.get_default(click.Context(_command(command)), call=True)
    if value in (None, "", ()):
        return ""
    return f"`{value}`"


def command_help(command: str, param: click.Option) -> str:
    meaning = param.help or MISSING_HELP.get((command, str(param.name)), "")
    meaning += _range_text(param)
    if param.multiple and "repeat" not in meaning.lower():
        meaning += " Repeatable."
    if (command, param.name) in WARNINGS:
        meaning += " " + WARNINGS[(command, str(param.name))]
    return meaning.strip().replace("|", "\\|")


def command_table(command: str) -> str:
    """`audiosum COMMAND`'s usage line, what it does (its docstring's first paragraph) and a table of its options."""
    cmd = _command(command)
    usage = " ".join(["audiosum", command, *cmd.collect_usage_pieces(click.Context(cmd, info_name=command))])
    lead = (cmd.help or "").split("\n\n", 1)[0].replace("\n", " ").strip()
    lines = [f"`{usage}`", "", lead, ""]
    options = [param for param in cmd.params if isinstance(param, click.Option)]
    if not options:
        return "\n".join([*lines, "It has no options besides `-h`/`--help`."])
    lines += ["| option | default | meaning |", "| --- | --- | --- |"]
    lines += [_command_row(command, param) for param in options]
    return "\n".join(lines)


def _command_row(command: str, param: click.Option) -> str:
    spelled = ", ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
    metavar = _metavar(param)
    spelled += f" {metavar}" if metavar else ""
    return f"| {spelled} | {command_default(command, param)} | {command_help(command, param)} |"


def _command_generator(command: str) -> Callable[[], str]:
    return lambda: command_table(command)


GENERATORS: dict[str, Callable[[], str]] = {
    "run": run_table, "job": job_table, **{command: _command_generator(command) for command in COMMANDS}}


def rendered(text: str, name: str) -> str:
    """text with its options:NAME block replaced by the generated table."""
    pattern = re.compile(rf"(<!-- options:{name} -->\n)(?:.*?\n)?(<!-- /options:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- options:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + GENERATORS[name]() + "\n" + m.group(2), text)
