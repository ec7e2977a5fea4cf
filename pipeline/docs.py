"""The option tables of README.md and jobs/README.md, rendered from the one options table (pipeline/settings.py).

Pure text: `rendered(text, name)` replaces the block between `<!-- options:NAME -->` and `<!-- /options:NAME -->`.
tests/test_docs.py fails when a file is out of date, and `python tests/test_docs.py` rewrites the blocks.
"""

from __future__ import annotations

import re

from pipeline.settings import RUN_OPTIONS, RunOption


def _range(option: RunOption) -> str:
    if option.low is not None and option.high is not None:
        return f", {_number(option.low)}..{_number(option.high)}"
    if option.low is not None:
        return f", >= {_number(option.low)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _job_type(option: RunOption) -> str:
    if option.kind == "choice":
        return " or ".join(f'`"{choice}"`' for choice in option.choices)
    return {"str": "string", "int": "integer", "number": "number", "str_list": "array of strings",
            "flag": "`true` or `false`", "date": "date (`2026-11-01`)"}[option.kind] + _range(option)


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
    return re.sub(r"\s*\[default: [^\]]+\]", "", option.help).replace("|", "\\|")


def run_table() -> str:
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]
    for option in RUN_OPTIONS:
        if not option.flags:
            continue
        spelled = ", ".join(f"`{flag}`" for flag in option.flags)
        if option.metavar:
            spelled += f" {option.metavar.replace('|', '/')}"
        rows.append(f"| {spelled} | {_default(option)} | {_meaning(option)} |")
    return "\n".join(rows)


def job_table() -> str:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for option in RUN_OPTIONS:
        if option.in_job:
            rows.append(f"| `{option.key}` | {_job_type(option)} | {_default(option)} | {_meaning(option)} |")
    return "\n".join(rows)


GENERATORS = {"run": run_table, "job": job_table}


def rendered(text: str, name: str) -> str:
    """text with its options:NAME block replaced by the generated table."""
    pattern = re.compile(rf"(<!-- options:{name} -->\n)(?:.*?\n)?(<!-- /options:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- options:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + GENERATORS[name]() + "\n" + m.group(2), text)
