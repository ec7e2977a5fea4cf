"""Named job files (`jobs/NAME.toml`): read one, check every key, and hand back validated run option values.

It must not run anything, read the environment or accept an API key; the CLI merges the values under its own options.

Path rule (also in jobs/README.md): relative paths in `inputs`, `out`, `env_file` and `podcast_image` are resolved
against the folder that *contains* the `jobs/` folder when the job file sits in a folder named exactly `jobs`, and
against the job file's own folder otherwise. So `jobs/nightly.toml` with `inputs = ["sample_inputs"]` means
`<repo>/sample_inputs` whatever the current directory is, which is what cron needs. A leading `~` is expanded;
absolute paths are kept. The job file's path is made absolute but symlinks are not followed, so a symlinked job file
resolves against where the link lives.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.settings import DATE_FORMATS, JOB_OPTIONS, RunOption, read_settings_text

JOBS_FOLDER_NAME = "jobs"
PRICE_KEYS = ("text_input_per_1m", "text_output_per_1m", "audio_input_per_1m", "audio_output_per_1m")
# Normalised (lower case, '-' as '_') names that would put a secret in a file cron reads and people commit. The key
# goes in the environment or in the 0600 file `env_file` names, never here.
SECRET_KEYS = frozenset({"api_key", "openai_api_key", "apikey", "openai_key", "key", "secret", "secret_key", "token",
                         "api_token", "access_token", "bearer", "password"})
JOB_FILE_LIMIT = 256 * 1024  # a page of settings (a long prompt, a few thousand paths); more is not a job file
# Levels of arrays, inline tables and dotted key parts a job file may nest (a job needs 1: [prices]). tomllib recurses
# once per array or inline-table level (a RecursionError past ~1000) and spends memory in the square of a dotted
# key's length (20,000 parts: 1.5 GB), so depth is checked on the text before it is parsed.
MAX_NESTING = 16


@dataclass(frozen=True, slots=True)
class JobFile:
    """One job file, loaded and checked; `values` holds only the options the file sets."""

    path: Path
    name: str
    description: str | None
    values: dict[str, object]
    prices: dict[str, float]
    notes: tuple[str, ...] = ()  # old key names the file used (read, with a warning)


@dataclass(frozen=True, slots=True)
class BrokenJob:
    """A job file that did not load; `reason` is the UsageError message."""

    path: Path
    name: str
    reason: str


KEYS: dict[str, RunOption] = {option.key: option for option in JOB_OPTIONS}  # from the one options table
REQUIRED = ("out",)  # and at least one of inputs / feeds
RENAMED = {option.old_key: option.key for option in JOB_OPTIONS if option.old_key}  # old key -> its new name
KNOWN_TOP_LEVEL = ("description", *KEYS, "prices", *RENAMED)


def load_job(path: Path) -> JobFile:
    """Read and check one job file; every problem is a UsageError naming the file (and the key, when there is one)."""
    path = Path(path)
    data = _read_toml(path)
    _refuse_secrets(path, data, table=None)

    for key in data:
        if key not in KNOWN_TOP_LEVEL:
            raise UsageError(_unknown_key(path, key, KNOWN_TOP_LEVEL))
    notes = []
    for old, new in RENAMED.items():
        if old in data:
            if new in data:
                raise UsageError(f"job file {path}: {old!r} is the old name of {new!r}; give only {new!r}")
            data[new] = data.pop(old)
            notes.append(f"job file {path}: key {old!r} is now {new!r}; the old name is read until the next release")
    for key in REQUIRED:
        if key not in data:
            raise UsageError(f"job file {path}: required key {key!r} is missing")
    if "inputs" not in data and "feeds" not in data:
        raise UsageError(f"job file {path}: required key 'inputs' is missing (or give 'feeds')")

    description = None
    if "description" in data:
        description = _check_str(path, "description", data["description"])

    base = job_base_dir(path)
    values: dict[str, object] = {}
    for key, spec in KEYS.items():
        if key not in data:
            continue
        value = _check_value(path, key, spec, data[key])
        if key == "inputs" and isinstance(value, tuple):
            value = tuple(_resolve(base, item) for item in value)
        elif key == "feeds" and isinstance(value, tuple):  # URLs stay as they are; local feed files resolve
            value = tuple(item if "://" in item else _resolve(base, item) for item in value)
        elif key in ("out", "env_file", "podcast_image") and isinstance(value, str):
            value = _resolve(base, value)
        values[key] = value

    prices = _check_prices(path, data["prices"]) if "prices" in data else {}
    return JobFile(path=path, name=path.stem, description=description, values=values, prices=prices,
                   notes=tuple(notes))


def list_jobs(folder: Path) -> list[JobFile | BrokenJob]:
    """Every `*.toml` in `folder` (not hidden, not recursive), sorted by file name, loaded or with its error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"jobs folder {folder} does not exist or is not a folder")
    found: list[JobFile | BrokenJob] = []
    for path in sorted(folder.glob("*.toml"), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_dir():
            continue
        try:
            found.append(load_job(path))
        except UsageError as exc:
            found.append(BrokenJob(path=path, name=path.stem, reason=str(exc)))
    return found


def job_base_dir(path: Path) -> Path:
    """The folder relative `inputs`/`out`/`env_file` paths are resolved against (see the module docstring)."""
    folder = Path(path).absolute().parent
    return folder.parent if folder.name == JOBS_FOLDER_NAME else folder


def _read_toml(path: Path) -> dict[str, object]:
    text = read_settings_text(path, "job file", limit=JOB_FILE_LIMIT)
    if _nesting(text) > MAX_NESTING:
        raise UsageError(f"job file {path}: nested more than {MAX_NESTING} levels deep (arrays, inline tables or "
                         "dotted keys); a job file is flat")
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer longer than Python converts (4300 digits)
        raise UsageError(f"job file {path}: invalid TOML: {exc}") from None
    except RecursionError:  # not reached past the depth check; kept so no text can make a traceback of it
        raise UsageError(f"job file {path}: nested too deeply to read") from None


def _nesting(text: str) -> int:
    """The deepest level of arrays, inline tables and dotted key parts (after the first) in TOML text, outside strings
    and comments, in one pass without parsing. A table header and the keys under it are counted apart (so the tables
    they make are at most three times as deep); a number's or a date's one dot adds at most one level."""
    deepest = depth = dots = 0
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char == "#":
            newline = text.find("\n", index)
            index = end if newline < 0 else newline
            continue
        if char in "\"'":
            index = _after_string(text, index)
            continue
        if char in "[{":
            depth, dots = depth + 1, 0
        elif char in "]}":
            depth, dots = max(0, depth - 1), 0
        elif char in "\n=,":
            dots = 0
        elif char == ".":
            dots += 1
        deepest = max(deepest, depth + dots)
        index += 1
    return deepest


def _after_string(text: str, start: int) -> int:
    """The index after the TOML string that opens at `start` (basic or literal, one line or multi-line); an unclosed
    one ends at its line (one-line) or the text's end, and tomllib reports it."""
    quote = text[start]
    multi_line = text.startswith(quote * 3, start)
    closing = quote * 3 if multi_line else quote
    index, end = start + len(closing), len(text)
    while index < end:
        char = text[index]
        if char == "\\" and quote == '"':
            index += 2
            continue
        if char == "\n" and not multi_line:
            return index
        if text.startswith(closing, index):
            index += len(closing)
            # a multi-line string may end with one or two quotes of its own: """a""""" closes after all five
            extra = 0
            while multi_line and extra < 2 and index < end and text[index] == quote:
                index, extra = index + 1, extra + 1
            return index
        index += 1
    return end


def _refuse_secrets(path: Path, data: dict[str, object], *, table: str | None) -> None:
    # The value is never echoed: it is (or may be) a real key.
    for key, value in data.items():
        name = f"{table}.{key}" if table else key
        if key.lower().replace("-", "_") in SECRET_KEYS:
            raise UsageError(f"job file {path}: key {name!r} is not allowed; an API key never goes in a job file "
                             "- set the OPENAI_API_KEY environment variable instead, or put OPENAI_API_KEY=... in a "
                             "file only you can read (chmod 600) and name it with env_file")
        if isinstance(value, dict):
            _refuse_secrets(path, value, table=name)


def _unknown_key(path: Path, key: str, known: tuple[str, ...], table: str | None = None) -> str:
    name = f"{table}.{key}" if table else key
    where = f"in [{table}]" if table else "at the top level"
    message = f"job file {path}: unknown key {name!r} {where}"
    close = difflib.get_close_matches(key.lower().replace("-", "_"), known, n=1, cutoff=0.6)
    if close:
        suggestion = f"{table}.{close[0]}" if table else close[0]
        return f"{message}; did you mean {suggestion!r}?"
    return f"{message}; known keys: {', '.join(known)}"


def _type_name(value: object) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    return type(value).__name__


def _wrong_type(path: Path, key: str, expected: str, value: object) -> UsageError:
    return UsageError(f"job file {path}: key {key!r} must be {expected}, got {_type_name(value)}")


def _check_str(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type(path, key, "a string", value)
    if not value.strip():
        raise UsageError(f"job file {path}: key {key!r} must not be empty")
    return value


def _expected(spec: RunOption) -> str:
    """What a string-valued key takes, for its wrong-type error: its other TOML forms first, then a string."""
    shown = spec.metavar or "|".join(spec.choices)
    text = "a string" + (f" ({shown})" if shown else "")
    forms = [form.expected for form in spec.toml]
    return f"{', '.join(forms)}, or {text}" if forms else text


def _check_value(path: Path, key: str, spec: RunOption, value: object) -> object:
    for form in spec.toml:  # a number, a boolean or an array where the option means one: what the command line gives
        text = form.read(value)
        if text is not None:
            return text
    if spec.kind in ("str", "choice") and not isinstance(value, str):
        raise _wrong_type(path, key, _expected(spec), value)
    if spec.kind == "str":
        return _check_str(path, key, value)
    if spec.kind == "flag":
        if not isinstance(value, bool):
            raise _wrong_type(path, key, "true or false", value)
        return value
    if spec.kind == "date":
        return _check_date(path, key, value)
    if spec.kind == "choice":
        chosen = _check_str(path, key, value)
        if chosen not in spec.choices:
            raise UsageError(f"job file {path}: key {key!r} must be one of {', '.join(spec.choices)}, got {chosen!r}")
        return chosen
    if spec.kind == "str_list":
        if not isinstance(value, list):
            raise _wrong_type(path, key, "an array of strings", value)
        if not value:
            raise UsageError(f"job file {path}: key {key!r} must not be an empty array")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise _wrong_type(path, f"{key}[{index}]", "a string", item)
            if not item.strip():
                raise UsageError(f"job file {path}: key {key}[{index}] must not be an empty string")
        return tuple(value)
    if spec.kind == "int":
        # bool is a subclass of int in Python, but `words = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(path, key, "an integer", value)
        _check_range(path, key, spec, value)
        return value
    if spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(path, key, "a number (integer or float)", value)
        if not math.isfinite(value):
            raise UsageError(f"job file {path}: key {key!r} must be a finite number, got {value}")
        _check_range(path, key, spec, value)
        return float(value)
    raise AssertionError(f"unhandled kind {spec.kind!r}")


def _check_date(path: Path, key: str, value: object) -> datetime:
    """A TOML date or date-time, or a string in one of the command line's formats."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = _check_str(path, key, value)
    for form in DATE_FORMATS:
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    raise UsageError(f"job file {path}: key {key!r} must be a date such as 2026-11-01, got {text[:40]!r}")


def _check_range(path: Path, key: str, spec: RunOption, value: float) -> None:
    if spec.low is not None and spec.high is not None:
        if not spec.low <= value <= spec.high:
            raise UsageError(f"job file {path}: key {key!r} must be between {_num(spec.low)} and "
                             f"{_num(spec.high)}, got {value}")
    elif spec.low is not None and value < spec.low:
        raise UsageError(f"job file {path}: key {key!r} must be at least {_num(spec.low)}, got {value}")


def _num(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


def _check_prices(path: Path, value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _wrong_type(path, "prices", "a table", value)
    prices: dict[str, float] = {}
    for key, price in value.items():
        name = f"prices.{key}"
        if key not in PRICE_KEYS:
            raise UsageError(_unknown_key(path, key, PRICE_KEYS, table="prices"))
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise _wrong_type(path, name, "a number (USD per million tokens)", price)
        if not math.isfinite(price) or price < 0:
            raise UsageError(f"job file {path}: key {name!r} must be a finite number >= 0, got {price}")
        prices[key] = float(price)
    return prices


def _resolve(base: Path, value: str) -> str:
    target = Path(value).expanduser()
    # normpath, not resolve(): predictable text, no symlink chasing, works for paths that do not exist yet.
    return os.path.normpath(target if target.is_absolute() else base / target)
