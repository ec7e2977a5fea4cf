"""The one declaration of every `audiosum run` option: each row generates its click option and its section of the
help, its job-file key (and that key's validation in jobs.py, with the TOML forms it takes) and names what it fills
in RunSettings; defaults derived from other options live here.

Builds settings only: it reads the environment (and an --env-file) for the key and base URL, and never runs or sends
anything.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar, get_args, get_type_hints

import click
import httpx

from pipeline.errors import DocumentError, UsageError
from pipeline.models import (
    AUDIO_FORMATS,
    BATCH_FALLBACKS,
    CAPTIONS,
    CUSTOM_VOICE_PREFIX,
    DEFAULT_API_BASE,
    DEFAULT_MODEL,
    DEFAULT_PODCAST_BASE_URL,
    DEFAULT_VOICE,
    DEFAULT_WORDS,
    EXECUTORS,
    LOG_FORMATS,
    MAX_CONCURRENCY,
    MODES,
    OPENAI_VOICES,
    OUTPUT_KINDS,
    PROVIDER_NAMES,
    STRATEGIES,
    PodcastChannel,
    ProviderName,
    RunSettings,
)

Kind = Literal["str", "int", "number", "choice", "str_list", "flag", "date"]
Group = Literal["inputs", "voice", "control", "feeds", "podcast", "api", "limits", "execution"]
# The sections of `run --help` and of the option tables in README.md and jobs/README.md, in the order they are shown:
# what a first run needs (where things go, what is said and how) before what one use or one provider needs.
GROUPS: dict[Group, str] = {
    "inputs": "Inputs and output",
    "voice": "Voice and summary",
    "control": "Run control",
    "feeds": "Feeds",
    "podcast": "Podcast",
    "api": "OpenAI API",
    "limits": "Rate limits and retries",
    "execution": "Execution",
}
Choice = TypeVar("Choice", bound=str)
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
_SETTINGS_DEFAULTS = {f.name: f.default for f in fields(RunSettings)}
_CHANNEL_DEFAULTS = {f.name: f.default for f in fields(PodcastChannel)}
PODCAST_KINDS: tuple[str, ...] = get_args(get_type_hints(PodcastChannel)["kind"])  # itunes:type's values
YES_NO = ("yes", "no")  # podcast:locked's own spelling


@dataclass(frozen=True, slots=True)
class TomlForm:
    """A TOML type a job-file key takes besides its kind's own (RunOption.toml), read into the text the command line
    would give for it, so that the one parse in build_settings reads a job file's value and a typed one alike."""

    name: str  # in jobs/README's type column
    expected: str  # in a job file's error: "key 'K' must be <expected>, ..., got <type>"
    read: Callable[[object], str | None]  # the command line's text for a value of this form; None: not of this form


def _toml_integer(value: object) -> str | None:
    # bool is an int in Python, but `ray_actors = true` is a mistake, not 1.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _toml_number(value: object) -> str | None:
    return str(value) if isinstance(value, float) else _toml_integer(value)


def _toml_yes_no(value: object) -> str | None:
    return (YES_NO[0] if value else YES_NO[1]) if isinstance(value, bool) else None


def _toml_integer_pair(value: object) -> str | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    low, high = (_toml_integer(item) for item in value)
    return f"{low},{high}" if low is not None and high is not None else None


TOML_NUMBER = TomlForm("number", "a number", _toml_number)
TOML_INTEGER = TomlForm("integer", "an integer", _toml_integer)
TOML_YES_NO = TomlForm("`true` or `false`", "true or false", _toml_yes_no)
TOML_INTEGER_PAIR = TomlForm("`[MIN, MAX]`", "an array [MIN, MAX] of two integers", _toml_integer_pair)


@dataclass(frozen=True, slots=True)
class RunOption:
    """One run option. `key` is its job-file key and the name its value travels under; `flags` its command-line
    spelling (empty: job files only); `group` its section of the help and the docs (GROUPS); `fingerprint`: changing
    it remakes the documents made before (plan.py)."""

    key: str
    flags: tuple[str, ...]
    kind: Kind
    help: str
    group: Group = field(kw_only=True)
    default: object = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    env: str | None = None
    in_job: bool = True
    fingerprint: bool = False
    show_default: bool = True
    # The key (and --flag) the option had before a rename: still read, with a warning, for one release.
    old_key: str | None = None
    # What a job file may give besides a string where the value means a number, a yes/no or a pair: `loudness = -18`.
    toml: tuple[TomlForm, ...] = ()


def _default(field_name: str) -> object:
    return _SETTINGS_DEFAULTS[field_name]


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("inputs", (), "str_list", "Folders, manifests, documents, recordings or feeds to read.",
              show_default=False, group="inputs"),
    RunOption("feeds", (), "str_list", "Feed URLs or files: inputs like any other.", show_default=False,
              group="inputs"),
    RunOption("out", ("-o", "--out"), "str", "Output folder: <id>.wav, <id>.json, report.json, report.html.",
              metavar="DIRECTORY", show_default=False, group="inputs"),
    RunOption("format", ("--format",), "choice", "Final audio format (the model is still asked for WAV; conversion "
              "is local).", default=_default("audio_format"), choices=AUDIO_FORMATS, fingerprint=True, group="inputs"),
    RunOption("output", ("--output",), "choice", "text+audio: a spoken summary (WAV) and sidecar; text: a sidecar "
              "and .txt only, for recordings (e.g. a sentiment analysis of a call with --instructions).",
              default=_default("output"), choices=OUTPUT_KINDS, fingerprint=True, group="inputs"),
    RunOption("loudness", ("--loudness",), "str", "Normalise to this integrated loudness [default: -16 for "
              "mp3/opus/flac, off for wav].", metavar="LUFS|off", fingerprint=True, show_default=False, group="inputs",
              toml=(TOML_NUMBER,)),
    RunOption("captions", ("--captions",), "choice", "The VTT's cues: per sentence or per word, timed from "
              "synthesis (offline voice) or by hearing the API's audio and aligning its transcript; off: nothing "
              "is heard, cue times are estimated from sentence length.", default=_default("captions"),
              choices=CAPTIONS, group="inputs", fingerprint=True),
    RunOption("language", ("--language",), "str", "Language recordings are heard in by the offline recogniser "
              "(ISO 639-1; its bundled model hears en only).", default=_default("language"), fingerprint=True,
              group="inputs"),
    RunOption("provider", ("--provider",), "choice", "auto = openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, "
              "else the offline engine.", default="auto", choices=("auto", *PROVIDER_NAMES), fingerprint=True,
              group="voice"),
    RunOption("voice", ("--voice",), "str", f"Voice ({', '.join(OPENAI_VOICES)}, or a custom voice's "
              f"{CUSTOM_VOICE_PREFIX}... id; other names are passed to the server as given).", default=DEFAULT_VOICE,
              fingerprint=True, group="voice"),
    RunOption("words", ("--words",), "int", "Target length of each summary in words.", default=DEFAULT_WORDS,
              low=10, high=2000, fingerprint=True, group="voice"),
    RunOption("instructions", ("--instructions",), "str", "Replace the system prompt; '{words}' in it becomes the "
              "--words value.", fingerprint=True, group="voice"),
    RunOption("mode", ("--mode",), "choice", "narrate: read the whole text aloud part by part and stitch one WAV "
              "with chapter marks.", default=_default("mode"), choices=MODES, fingerprint=True, group="voice"),
    RunOption("followups", ("--followup",), "str_list", "A follow-up question asked after each summary (repeat for "
              "more); answers go to <id>.q1.wav, ... A manifest item's own `followups` replace these.",
              metavar="QUESTION", fingerprint=True, show_default=False, group="voice"),
    # dry_run, quiet and log_format: how this invocation runs and talks, not what the run makes (command line only).
    RunOption("dry_run", ("--dry-run",), "flag", "Read and plan everything, send nothing (no key needed): counts, "
              "tokens, audio minutes, cost and time, on stdout and in OUT/dry-run.json and .html (report.* untouched).",
              default=False, in_job=False, group="control"),
    RunOption("force", ("--force",), "flag", "Redo every document, even those unchanged since an earlier run.",
              default=False, group="control"),
    RunOption("strict", ("--strict",), "flag", "A degraded document (made, but thinner than asked: a feed's summary "
              "for an article that could not be read) counts as failed: exit 1, and the next run makes it again.",
              default=False, group="control"),
    RunOption("quiet", ("-q", "--quiet"), "flag", "Print only failures and the final summary.", default=False,
              in_job=False, group="control"),
    RunOption("log_format", ("--log-format",), "choice", "json: one JSON object per event on stderr (run start/end, "
              "each document, retries, pauses).", default=LOG_FORMATS[0], choices=LOG_FORMATS, in_job=False,
              group="control"),
    RunOption("grace", ("--grace",), "number", "On SIGINT/SIGTERM, seconds in-flight documents get to finish before "
              "they are abandoned.", default=_default("grace_s"), low=0, group="control"),
    RunOption("since", ("--since",), "date", "Only entries published on or after this date, "
              "YYYY-MM-DD[THH:MM[:SS]] (entries without a date are kept).", group="feeds"),
    RunOption("max_items", ("--max-items",), "int", "At most the newest N entries of each feed.",
              low=1, high=100_000, group="feeds"),
    RunOption("allow_private_links", ("--allow-private-links",), "flag", "Also fetch article links on "
              "loopback, private and link-local addresses (an intranet).", default=False, group="feeds"),
    RunOption("proxy", ("--proxy",), "str", "Fetch pages through this proxy (the environment's HTTP_PROXY "
              "and friends are never used).", metavar="URL", group="feeds"),
    RunOption("podcast_url", ("--podcast-url",), "str", "Public URL of OUT/ that podcast.xml's enclosures and "
              f"transcripts point to [default: {DEFAULT_PODCAST_BASE_URL}] (was --base-url / base_url: still read, "
              "with a warning, until the next release).", old_key="base_url", show_default=False, group="podcast"),
    RunOption("podcast_title", ("--podcast-title",), "str", "The podcast's title [default: 'audiosum: <OUT name>'].",
              show_default=False, group="podcast"),
    RunOption("keep", ("--keep",), "int", "Episodes (newest first) listed in podcast.xml.",
              default=_default("podcast_keep"), low=1, high=100_000, group="podcast"),
    RunOption("podcast_image", ("--podcast-image",), "str", "The podcast's artwork: a square JPEG or PNG in RGB, "
              "1400-3000 px, copied into OUT (another image is published as a copy made to fit, with a warning) "
              "[default: a cover drawn from the title].", metavar="PATH", show_default=False, group="podcast"),
    RunOption("podcast_author", ("--podcast-author",), "str", "itunes:author, the name apps show under the podcast's "
              "title [default: the owner's name, else 'audiosum'].", show_default=False, group="podcast"),
    RunOption("podcast_owner_name", ("--podcast-owner-name",), "str", "itunes:owner's name, the contact directories "
              "keep [default: the author].", show_default=False, group="podcast"),
    RunOption("podcast_owner_email", ("--podcast-owner-email",), "str", "itunes:owner's email (and podcast:locked's "
              "owner), where Apple Podcasts and Spotify send their ownership check; a published feed without one "
              "gets a warning.", metavar="EMAIL", show_default=False, group="podcast"),
    RunOption("podcast_copyright", ("--podcast-copyright",), "str", "The channel's copyright line [default: none: "
              "the rights in the summarised texts are their authors'].", show_default=False, group="podcast"),
    RunOption("podcast_type", ("--podcast-type",), "choice", "itunes:type: episodic (apps list newest first) or "
              "serial (in order, oldest first).", default=_CHANNEL_DEFAULTS["kind"], choices=PODCAST_KINDS,
              group="podcast"),
    RunOption("podcast_locked", ("--podcast-locked",), "choice", "podcast:locked: yes asks other podcast hosts not "
              "to import the feed.", default="yes" if _CHANNEL_DEFAULTS["locked"] else "no", choices=YES_NO,
              group="podcast", toml=(TOML_YES_NO,)),
    RunOption("podcast_language", ("--podcast-language",), "str", "The channel's language (RFC 5646: en, en-GB, "
              "pt-BR) [default: --language].", show_default=False, group="podcast"),
    RunOption("env_file", ("--env-file",), "str", "A file of KEY=VALUE lines (mode 0600) that supplies OPENAI_API_KEY "
              "and OPENAI_BASE_URL where the environment does not set them (cron has an empty environment).",
              metavar="PATH", show_default=False, group="api"),
    RunOption("api_base", ("--api-base",), "str", f"API base URL [env OPENAI_BASE_URL; default {DEFAULT_API_BASE}].",
              env="OPENAI_BASE_URL", show_default=False, group="api"),
    RunOption("model", ("--model",), "str", "Model name sent to the API.", default=DEFAULT_MODEL, fingerprint=True,
              group="api"),
    RunOption("strategy", ("--strategy",), "choice", "chat-audio: one chat request answers with the spoken summary; "
              "two-step: a text model writes it (--text-model), the speech endpoint speaks it (--tts-model), about a "
              "fifth of the cost per spoken minute.", default=_default("strategy"), choices=STRATEGIES,
              fingerprint=True, group="api"),
    RunOption("text_model", ("--text-model",), "str", "two-step: the text model that writes the summary.",
              default=_default("text_model"), fingerprint=True, group="api"),
    RunOption("tts_model", ("--tts-model",), "str", "two-step: the speech model (POST /audio/speech).",
              default=_default("tts_model"), fingerprint=True, group="api"),
    RunOption("voice_instructions", ("--voice-instructions",), "str", "two-step: how to speak (tone, pace, "
              "accent), sent as the speech request's instructions.", fingerprint=True, group="api"),
    RunOption("batch", ("--batch",), "flag", "Send the text step of two-step (implied) through the Batch API (half "
              "price, done within 24 h); the run exits 0 saying it is waiting, and later runs collect and speak it.",
              default=False, group="api"),
    RunOption("batch_fallback", ("--batch-fallback",), "choice", "--batch: where a line that failed or expired "
              "inside a batch goes: the next batch, or a synchronous request (sync).",
              default=_default("batch_fallback"), choices=BATCH_FALLBACKS, group="api"),
    RunOption("max_input_tokens", ("--max-input-tokens",), "int", "Token budget of one request's document text; "
              "longer documents are summarised part by part (map) and spoken from the part summaries (reduce).",
              default=_default("max_input_tokens"), low=500, high=1_000_000, group="api"),
    RunOption("map_model", ("--map-model",), "str", "Text model for the part summaries of long documents.",
              default=_default("map_model"), group="api"),
    RunOption("max_audio_mb", ("--max-audio-mb",), "number", "Largest recording sent in one request; longer ones "
              "are split at pauses into parts that fit.", default=20.0, low=0.01, high=1000, group="api"),
    RunOption("rpm", ("--rpm",), "int", "Requests per minute allowed (0 = learn it from the server's "
              "x-ratelimit-* headers).", default=0, low=0, group="limits"),
    RunOption("tpm", ("--tpm",), "int", "Tokens per minute allowed (0 = learn it from the server's headers).",
              default=0, low=0, group="limits"),
    RunOption("max_attempts", ("--max-attempts",), "int", "Tries per document for transient failures (429, 5xx, "
              "timeouts, broken answers).", default=_default("max_attempts"), low=1, high=20, group="limits"),
    RunOption("timeout", ("--timeout",), "number", "Seconds to wait for one answer.", default=_default("timeout_s"),
              low=1, high=3600, group="limits"),
    RunOption("retry_backoff", ("--retry-backoff",), "number", "First backoff in seconds when the server gives no "
              "Retry-After; it doubles per attempt (with full jitter, capped at 30 s).",
              default=_default("retry_backoff_s"), low=0.001, high=60, group="limits"),
    RunOption("concurrency", ("--concurrency",), "int", "Documents in flight at once [default: --workers for local, "
              "or with --executor ray the actor pool's size; for openai 8, or enough to keep --rpm busy].", low=1,
              high=MAX_CONCURRENCY, show_default=False, group="execution"),
    RunOption("workers", ("--workers",), "int", "Offline engine: speech worker processes (the cores are shared "
              "between them).", default=min(2, os.cpu_count() or 1), low=1, high=64, group="execution"),
    RunOption("executor", ("--executor",), "choice", "Where the CPU work runs: this machine (the offline engine's "
              "worker processes, threads for publishing and caption hearing), or a Ray actor pool for all of it, the "
              "API's answers' publishing and hearing included (pip install '.[ray]').", default=_default("executor"),
              choices=EXECUTORS, group="execution"),
    RunOption("ray_address", ("--ray-address",), "str", "--executor ray: the cluster to join [env RAY_ADDRESS; "
              "default: start Ray on this machine].", env="RAY_ADDRESS", metavar="ADDRESS", show_default=False,
              group="execution"),
    RunOption("ray_actors", ("--ray-actors",), "str", "--executor ray: the actor pool's autoscaling bounds "
              "[default: 1 to the cluster's CPUs over each actor's share].", metavar="MIN,MAX", show_default=False,
              group="execution", toml=(TOML_INTEGER, TOML_INTEGER_PAIR)),
)
OPTIONS_BY_KEY = {option.key: option for option in RUN_OPTIONS}
JOB_OPTIONS = tuple(option for option in RUN_OPTIONS if option.in_job)


def _click_type(option: RunOption) -> Any:
    if option.kind == "int":
        return click.IntRange(None if option.low is None else int(option.low),
                              None if option.high is None else int(option.high))
    if option.kind == "number":
        return click.FloatRange(option.low, option.high)
    if option.kind == "choice":
        return click.Choice(option.choices)
    if option.kind == "date":
        return click.DateTime(list(DATE_FORMATS))
    return str


def metavar(option: RunOption) -> str | None:
    """What stands for the option's value in the help: the row's own, else short names for numbers and dates (click's
    "INTEGER RANGE" widens the help's first column for every row); None for click's own (a choice lists its values)."""
    return option.metavar or {"int": "N", "number": "NUMBER", "date": "DATE"}.get(option.kind)


def old_flag(option: RunOption) -> str:
    """The command-line spelling an option had before its rename."""
    assert option.old_key is not None
    return "--" + option.old_key.replace("_", "-")


def grouped(options: tuple[RunOption, ...]) -> list[tuple[str, list[RunOption]]]:
    """The options under their GROUPS titles, in GROUPS order and table order within each; a group with none is left
    out. The help and the docs both read this, so they show the same sections."""
    return [(title, members) for group, title in GROUPS.items()
            if (members := [option for option in options if option.group == group])]


def run_options(*first: Decorator) -> Decorator:
    """Decorate a click command with every run option of the table, in its help sections (cloup option groups, see
    GROUPS); `first`: options the command declares itself (run's --job), put first in the first section. An option's
    old spelling is a hidden flag of its own (old_<key>), read by renamed_options()."""
    import cloup  # only the command line needs it: jobs.py and the runner read the table without it

    def option_decorators(option: RunOption) -> list[Decorator]:
        if option.kind == "flag":
            decorators: list[Decorator] = [click.option(*option.flags, option.key, is_flag=True,
                                                        help=option.help)]
        else:
            decorators = [click.option(
                *option.flags, option.key, type=_click_type(option), default=option.default,
                multiple=option.kind == "str_list", metavar=metavar(option), envvar=option.env,
                show_default=option.show_default and option.default is not None, help=option.help)]
        if option.old_key is not None:
            decorators.append(click.option(old_flag(option), "old_" + option.old_key, type=_click_type(option),
                                           default=None, hidden=True))
        return decorators

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        sections = grouped(tuple(option for option in RUN_OPTIONS if option.flags))
        for index, (title, members) in reversed(list(enumerate(sections))):
            decorators = [decorator for option in members for decorator in option_decorators(option)]
            command = cloup.option_group(title, *(first if index == 0 else ()), *decorators)(command)
        return command

    return decorate


def renamed_options(command_line: Mapping[str, object],
                    given: Callable[[str], bool]) -> tuple[dict[str, object], set[str], list[str]]:
    """Options given under their old spelling (an option's old_key) moved to their new key, unless the new one was
    given too: (the options, the keys given that way, one warning a rename)."""
    moved = dict(command_line)
    keys: set[str] = set()
    notes: list[str] = []
    for option in RUN_OPTIONS:
        if option.old_key is None or not option.flags:
            continue
        old = moved.pop("old_" + option.old_key, None)
        if old is None:
            continue
        notes.append(f"{old_flag(option)} is now {option.flags[-1]}; the old name is read until the next release")
        if not given(option.key):
            moved[option.key] = old
            keys.add(option.key)
    return moved, keys, notes


def merge(command_line: Mapping[str, object], given: Callable[[str], bool],
          job_values: Mapping[str, object]) -> dict[str, object]:
    """Table defaults < job file < options given on the command line (`given(key)`: typed, or from the env)."""
    values = {option.key: option.default for option in RUN_OPTIONS}
    values.update(job_values)
    values.update({key: value for key, value in command_line.items() if key in values and given(key)})
    return values


# The names an env file may supply; its other lines are read (and must be KEY=VALUE) but not used.
ENV_FILE_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
_ENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")


ENV_FILE_LIMIT = 64 * 1024  # a few KEY=VALUE lines; anything larger is not an env file


def read_settings_text(path: Path, what: str, *, limit: int, encoding: str = "utf-8",
                       check: Callable[[BinaryIO], None] | None = None) -> str:
    """A job or env file's text: UsageError naming `what` and the file when it cannot be read, is not a regular file,
    holds more than `limit` bytes or is not UTF-8 (never chained: the bytes may hold a key). `check` sees the open file
    first (the env file's mode)."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one; fstat then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISREG(mode):  # a folder cannot even be wrapped in a file object
            with open(descriptor, "rb", closefd=False) as handle:
                if check is not None:
                    check(handle)
                raw = handle.read(limit + 1)  # never cut at the cap: a shortened file could still parse
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(descriptor)
    if not stat.S_ISREG(mode):
        raise UsageError(f"{what} {path} is not a regular file ({_file_kind(mode)}): name a file")
    if len(raw) > limit:
        raise UsageError(f"{what} {path} is larger than {limit // 1024} KB, more than such a file ever holds")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def read_env_file(path: Path) -> dict[str, str]:
    """OPENAI_API_KEY and OPENAI_BASE_URL from a file of KEY=VALUE lines (`#` comments, blank lines, `export`,
    optional quotes). UsageError for a file other users can read, anything but a regular file of at most 64 KB, or a
    line that is not KEY=VALUE; an error names the file and line, never a line's text (it may hold the key)."""
    def private(handle: BinaryIO) -> None:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o077:
            raise UsageError(f"env file {path} can be read or written by other users (mode "
                             f"{stat.S_IMODE(mode):04o}) and it holds an API key: run chmod 600 {path}")

    text = read_settings_text(path, "env file", encoding="utf-8-sig", check=private, limit=ENV_FILE_LIMIT)
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        matched = _ENV_LINE.fullmatch(line)
        value = _env_value(matched[2]) if matched else None
        if matched is None or value is None:
            raise UsageError(f"env file {path}, line {number}: not a KEY=VALUE line (or an unclosed quote)")
        if matched[1] in ENV_FILE_NAMES:
            found[matched[1]] = value
    return found


def _env_value(raw: str) -> str | None:
    """A value as written: inside its quotes (then anything after them but a comment is an error), else up to an
    unquoted ` #` comment; None when it cannot be read."""
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        if end < 0 or raw[end + 1:].strip()[:1] not in ("", "#"):
            return None
        return raw[1:end]
    return re.split(r"\s#", raw, maxsplit=1)[0].strip()


def with_env_file(values: Mapping[str, object], environ: Mapping[str, str], *,
                  api_base_on_command_line: bool) -> tuple[dict[str, object], dict[str, str]]:
    """The option values and the environment with `env_file`'s OPENAI_* names filled in where the environment lacks
    them: the environment always wins, and the file's base URL counts as exported (over a job's `api_base`, under an
    --api-base typed on the command line)."""
    merged_values, merged_env = dict(values), dict(environ)
    if not values.get("env_file"):
        return merged_values, merged_env
    for name, value in read_env_file(Path(str(values["env_file"])).expanduser()).items():
        if value.strip() and not environ.get(name, "").strip():
            merged_env[name] = value
            if name == "OPENAI_BASE_URL" and not api_base_on_command_line:
                merged_values["api_base"] = value
    return merged_values, merged_env


def job_api_base_warning(job_path: Path, job_api_base: str, settings: RunSettings, environ: Mapping[str, str], *,
                          api_base_typed: bool) -> str | None:
    """One line when a job file's `api_base` is not where the environment points the key (OPENAI_BASE_URL, an env
    file's included, else the default) while a key is to be sent: the key goes to whatever api_base says, so a shared
    job file can name its own server. None without a key, for the offline engine, when --api-base was typed (the
    person chose), or when the two agree. Never holds the key."""
    from pipeline.redact import url_without_credentials, visible, without_secrets

    if settings.provider != "openai" or not settings.api_key or api_base_typed:
        return None
    exported = environ.get("OPENAI_BASE_URL", "").strip()
    expected = (exported or DEFAULT_API_BASE).rstrip("/")
    if job_api_base.strip().rstrip("/") == expected:
        return None
    if settings.api_base == expected:  # the environment wins over a job file
        outcome = (f" (OPENAI_BASE_URL {url_without_credentials(expected)} overrides it this time): that server "
                   "would receive the API key")
    else:
        where = "OPENAI_BASE_URL" if exported else "the default"
        outcome = f": the API key is sent there, not to {url_without_credentials(expected)} ({where})"
    message = (f"job file {job_path} sets api_base {url_without_credentials(job_api_base)}{outcome}; run only job "
               "files you trust")
    return visible(without_secrets(message, settings.api_key), one_line=True)


def build_settings(inputs: tuple[str, ...], values: Mapping[str, object], *, prices: Mapping[str, float],
                   environ: Mapping[str, str]) -> RunSettings:
    """RunSettings from merged option values; every default that depends on another option is decided here."""
    if not inputs:
        raise UsageError("give at least one INPUT (or a --job that names its inputs)")
    if not values.get("out"):
        raise UsageError("give an output folder with -o/--out (or a --job that names one)")
    api_key = environ.get("OPENAI_API_KEY", "").strip() or None
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        # Never echo it: say only what is wrong with it.
        raise UsageError("OPENAI_API_KEY contains characters that cannot go in an HTTP header "
                         "(spaces, control characters or non-ASCII); check how it was exported")
    api_base = str(values["api_base"]) if values.get("api_base") else None
    # A dry run sends nothing, so it needs no key: it plans and prices with the chosen provider and model.
    provider = resolve_provider(str(values["provider"]), api_key, api_base, planning=bool(values.get("dry_run")))
    rpm, workers, audio_format = _int(values["rpm"]), _int(values["workers"]), _choice(values["format"], AUDIO_FORMATS)
    concurrency = _int(values["concurrency"]) if values["concurrency"] else (
        workers if provider == "local" else default_concurrency(rpm))
    return RunSettings(
        inputs=inputs, out_dir=Path(str(values["out"])), provider=provider, model=str(values["model"]),
        voice=str(values["voice"]), words=_int(values["words"]), concurrency=concurrency,
        concurrency_given=bool(values["concurrency"]),
        instructions=_optional_str(values["instructions"]),
        api_base=check_base_url(api_base or DEFAULT_API_BASE), api_key=api_key,
        timeout_s=_float(values["timeout"]), local_workers=workers, rpm=rpm, tpm=_int(values["tpm"]),
        max_attempts=_int(values["max_attempts"]), retry_backoff_s=_float(values["retry_backoff"]),
        force=bool(values["force"]), strict=bool(values["strict"]), grace_s=_float(values["grace"]),
        price_overrides=dict(prices),
        podcast_url=_optional_str(values["podcast_url"]), podcast_keep=_int(values["keep"]),
        podcast_title=_optional_str(values["podcast_title"]), max_input_tokens=_int(values["max_input_tokens"]),
        map_model=str(values["map_model"]), mode=_choice(values["mode"], MODES),
        since=_aware(values["since"]), max_items=_int(values["max_items"]) if values["max_items"] else None,
        audio_format=audio_format, loudness_lufs=loudness_for(values["loudness"], audio_format),
        output=_choice(values["output"], OUTPUT_KINDS),
        followups=_followups(values["followups"]),
        max_audio_bytes=int(_float(values["max_audio_mb"]) * 1024 * 1024),
        allow_private_links=bool(values["allow_private_links"]), proxy=_proxy(values["proxy"]),
        strategy="two-step" if values["batch"] else _choice(values["strategy"], STRATEGIES),
        text_model=str(values["text_model"]), tts_model=str(values["tts_model"]),
        voice_instructions=_optional_str(values["voice_instructions"]),
        batch=bool(values["batch"]), batch_fallback=_choice(values["batch_fallback"], BATCH_FALLBACKS),
        captions=_choice(values["captions"], CAPTIONS), language=_language(values["language"]),
        executor=_choice(values["executor"], EXECUTORS), ray_address=_optional_str(values["ray_address"]),
        ray_actors=_ray_actors(values["ray_actors"]), podcast=_podcast_channel(values),
    )


def _podcast_channel(values: Mapping[str, object]) -> PodcastChannel:
    """What podcast.xml says of its channel; an email or a language a directory could not read is exit 2."""
    email = _optional_str(values["podcast_owner_email"])
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s.]+", email.strip()):
        raise UsageError(f"--podcast-owner-email {_shown(email)!r} is not an email address")
    language = _optional_str(values["podcast_language"])
    if language is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language.strip()):
        raise UsageError(f"--podcast-language {_shown(language)!r} is not a language tag such as en, en-GB or pt-BR")
    kind: Literal["episodic", "serial"] = "serial" if _choice(values["podcast_type"], PODCAST_KINDS) == "serial" \
        else "episodic"
    return PodcastChannel(
        image=_optional_str(values["podcast_image"]), author=_optional_str(values["podcast_author"]),
        owner_name=_optional_str(values["podcast_owner_name"]), owner_email=email.strip() if email else None,
        copyright=_optional_str(values["podcast_copyright"]), kind=kind,
        locked=_choice(values["podcast_locked"], YES_NO) == "yes", language=language.strip() if language else None)


def _language(value: object) -> str:
    code = str(value).strip().lower()
    if not re.fullmatch(r"[a-z]{2,3}", code):
        raise UsageError(f"--language {_shown(str(value))!r} is not a language code such as en, de or fr")
    return code


def _ray_actors(value: object) -> tuple[int, int] | None:
    """--ray-actors MIN,MAX (or one number: a fixed pool)."""
    if value is None:
        return None
    low, _, high = str(value).partition(",")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise UsageError(f"--ray-actors {_shown(str(value))!r} is not MIN,MAX (two whole numbers)") from None
    if not 1 <= bounds[0] <= bounds[1] <= 1024:
        raise UsageError(f"--ray-actors {bounds[0]},{bounds[1]}: need 1 <= MIN <= MAX <= 1024")
    return bounds


def _int(value: object) -> int:
    """A value the table's validation (click or jobs.py) already checked."""
    return value if isinstance(value, int) else int(str(value))


def _choice(value: object, choices: tuple[Choice, ...]) -> Choice:
    """A choice the table's validation already checked, as the Literal type its row declares."""
    for choice in choices:
        if value == choice:
            return choice
    raise UsageError(f"{_shown(str(value))!r} is not one of {', '.join(choices)}")


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else float(str(value))


def resolve_provider(choice: str, api_key: str | None, base_url: str | None, *, planning: bool = False) -> ProviderName:
    if choice == "auto":
        return "openai" if (api_key or base_url) else "local"
    if choice == "openai" and not (api_key or base_url) and not planning:
        raise UsageError("--provider openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server), "
                         "exported or in an --env-file")
    return "openai" if choice == "openai" else "local"


def check_base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageError(f"base URL {_shown(url)!r} is not a URL: {exc}") from None  # the URL may hold a password
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"base URL {_shown(url)!r} must be an http:// or https:// URL with a host")
    return url.rstrip("/")


def default_concurrency(rpm: int) -> int:
    """Enough requests in flight to keep the rate busy at a few seconds' latency (Little's law), within 8..64."""
    if rpm <= 0:
        return 8
    return max(8, min(64, -(-rpm * 4 // 60)))


def loudness_for(value: object, audio_format: str) -> float | None:
    """--loudness: LUFS, or 'off'; by default -16 for a published format and off for WAV."""
    if value is None:
        return -16.0 if audio_format != "wav" else None
    if str(value).lower() == "off":
        return None
    try:
        lufs = float(str(value))
    except ValueError:
        raise UsageError(f"--loudness must be a LUFS value such as -16, or 'off' (not {_shown(str(value))!r})") \
            from None
    if not -50 <= lufs <= -5:
        raise UsageError(f"--loudness {lufs} is outside -50..-5 LUFS")
    return lufs


def _shown(value: str) -> str:
    from pipeline.redact import quoted, shown_input

    return quoted(shown_input(value))


def _optional_str(value: object) -> str | None:
    return str(value) if value is not None else None


def _followups(value: object) -> tuple[str, ...]:
    from pipeline.sources import parse_followups

    try:
        questions = list(value) if isinstance(value, (list, tuple)) else value
        return parse_followups(questions, "the follow-up questions (--followup, or a job's followups)") or ()
    except DocumentError as exc:
        raise UsageError(str(exc)) from exc


def _aware(value: object) -> datetime | None:
    """A --since date without a zone is taken as UTC (feeds give zoned dates)."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _proxy(value: object) -> str | None:
    if value is None:
        return None
    from pipeline.sources.fetch import check_proxy

    check_proxy(str(value))
    return str(value)
