"""The options table (pipeline/settings.py) is the one declaration: every run option round-trips through a job file
and the command line to the same RunSettings, the command line wins, and the fingerprint changes exactly for the
options the table marks so."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline import cli, plan
from pipeline.errors import UsageError
from pipeline.models import Document, RunSettings
from pipeline.settings import JOB_OPTIONS, RUN_OPTIONS, RunOption, read_env_file, run_options

BOTH = [option for option in JOB_OPTIONS if option.flags]  # settable from a job file and from the command line
ENV = {"OPENAI_API_KEY": "sk-test-settings"}
STRINGS = {"loudness": "-20", "proxy": "http://127.0.0.1:3128", "api_base": "http://127.0.0.1:9/v1",
           "podcast_url": "https://pods.example.org/feed/", "out": "/tmp/audiosum-settings-out", "language": "de",
           "ray_actors": "1,3", "podcast_owner_email": "owner@pods.example.org", "podcast_language": "en-GB",
           "podcast_image": "/tmp/audiosum-settings-cover.png"}  # absolute: a job resolves a relative path
TWO_STEP_ONLY = {"text_model", "tts_model", "voice_instructions"}
SECOND_STRINGS = {"language": "fr", "ray_actors": "2,2", "podcast_language": "pt-BR",
                  "podcast_image": "/tmp/audiosum-settings-other-cover.png"}


def _env_file(folder: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = folder / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


# env_file's examples: files whose base URL shows in the settings (ENV already has a key, which wins over a file's).
_ENV_FILES = Path(tempfile.mkdtemp(prefix="audiosum-settings-env-"))
STRINGS["env_file"] = str(_env_file(_ENV_FILES, "first.env", "OPENAI_BASE_URL=http://127.0.0.1:7/v1\n"))
SECOND_ENV_FILE = str(_env_file(_ENV_FILES, "second.env", "OPENAI_BASE_URL=http://127.0.0.1:8/v1\n"))


def _example(option: RunOption) -> object:
    """A valid value other than the default."""
    if option.kind == "flag":
        return True
    if option.kind == "choice":
        return next(c for c in reversed(option.choices) if c != option.default)
    if option.kind == "int":
        value = int(option.low or 0) + 3
        return value + 1 if value == option.default else value
    if option.kind == "number":
        value = float(option.low or 0) + 1.5
        return value + 1 if value == option.default else value
    if option.kind == "str_list":
        return ["Who decided it?"]
    if option.kind == "date":
        return "2026-11-01"
    return STRINGS.get(option.key, f"example-{option.key}")


def _toml(option: RunOption, value: object) -> str:
    if option.kind == "flag":
        return "true" if value else "false"
    if option.kind in ("int", "number"):
        return repr(value)
    if option.kind == "str_list":
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"  # type: ignore[union-attr]
    if option.kind == "date":
        return str(value)  # a TOML local date
    return f'"{value}"'


def _argv(option: RunOption, value: object) -> list[str]:
    if option.kind == "flag":
        return [option.flags[-1]]
    if option.kind == "str_list":
        return [part for item in value for part in (option.flags[-1], str(item))]  # type: ignore[union-attr]
    return [option.flags[-1], str(value)]


def _settings(argv: list[str], env: dict[str, str] | None = None) -> RunSettings:
    """RunSettings as `audiosum run` builds them: the table's click options and cli's own merge."""
    captured: list[RunSettings] = []

    @click.command()
    @click.argument("inputs", nargs=-1)
    @click.option("--job", "job_path", type=click.Path(path_type=Path), default=None)
    @run_options()
    @click.pass_context
    def probe(ctx: click.Context, inputs: tuple[str, ...], job_path: Path | None, **options: object) -> None:
        captured.append(cli._run_settings(ctx, inputs, job_path, options)[1])

    result = CliRunner().invoke(probe, argv, env={**ENV, **(env or {})}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return captured[0]


def _job(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "job.toml"
    path.write_text("\n".join(['inputs = ["/tmp/in"]', 'out = "/tmp/audiosum-settings-out"', *lines]) + "\n")
    return path


def test_the_table_covers_every_settable_field() -> None:
    """Every RunSettings field is filled from the table (or, for the key and the prices, from their own place)."""
    filled_elsewhere = {"api_key", "price_overrides", "local_workers", "out_dir"}
    defaults = _settings(["/tmp/in", "-o", "/tmp/o"])
    for option in RUN_OPTIONS:
        if not option.in_job:
            continue
        changed = dataclasses.asdict(_with(option, _example(option))) if option.flags else None
        if changed is not None:
            assert changed != dataclasses.asdict(defaults), f"{option.key} changes no setting"
    assert filled_elsewhere <= {f.name for f in dataclasses.fields(RunSettings)}


def _with(option: RunOption, value: object) -> RunSettings:
    return _settings(["/tmp/in", "-o", "/tmp/o", *_argv(option, value)])


@pytest.mark.parametrize("option", BOTH, ids=lambda option: option.key)
def test_each_option_round_trips_through_a_job_file_and_the_command_line(tmp_path: Path, option: RunOption) -> None:
    value = _example(option)
    from_job = _settings(["--job", str(_job(tmp_path, [f"{option.key} = {_toml(option, value)}"]))]
                         if option.key != "out" else ["--job", str(_job(tmp_path, []))])
    from_cli = _settings(["/tmp/in", "-o", "/tmp/audiosum-settings-out", *_argv(option, value)])
    assert dataclasses.asdict(from_job) == dataclasses.asdict(from_cli)


@pytest.mark.parametrize("option", [o for o in BOTH if o.kind != "flag"], ids=lambda option: option.key)
def test_the_command_line_wins_over_the_job_file(tmp_path: Path, option: RunOption) -> None:
    value = _example(option)
    job = _job(tmp_path, [f"{option.key} = {_toml(option, value)}"] if option.key != "out" else [])
    second = _argv(option, _second_example(option, value))
    explicit = _settings(["--job", str(job), *second])
    command_line_only = _settings(["/tmp/in", "-o", "/tmp/audiosum-settings-out", *second])
    assert dataclasses.asdict(explicit) == dataclasses.asdict(command_line_only)
    if option.key != "out":
        assert dataclasses.asdict(explicit) != dataclasses.asdict(_settings(["--job", str(job)]))


def _second_example(option: RunOption, first: object) -> object:
    if option.kind == "choice":
        return next(c for c in option.choices if c != first)
    if option.kind in ("int", "number"):
        return first + 1  # type: ignore[operator]
    if option.kind == "str_list":
        return ["What comes next?"]
    if option.kind == "date":
        return "2026-10-01"
    if option.key == "loudness":
        return "-18"
    if option.key == "env_file":
        return SECOND_ENV_FILE
    if option.key in SECOND_STRINGS:
        return SECOND_STRINGS[option.key]
    if option.key in STRINGS:
        return STRINGS[option.key].replace("127.0.0.1", "localhost").replace("pods", "casts").replace("-out", "-o2")
    return f"second-{option.key}"


@pytest.mark.parametrize("option", BOTH, ids=lambda option: option.key)
def test_the_fingerprint_changes_exactly_for_the_options_marked_so(option: RunOption) -> None:
    document = Document(id="d", source="d.txt", text="Some text.", sha256="0" * 64, title="D")
    # The two-step models and voice instructions matter to two-step runs only, and --batch implies two-step:
    # compared within one.
    base = ["--strategy", "two-step"] if option.key in TWO_STEP_ONLY | {"batch"} else []
    before = plan.fingerprint(document, _settings(["/tmp/in", "-o", "/tmp/o", *base]))
    after = plan.fingerprint(document, _settings(["/tmp/in", "-o", "/tmp/o", *base, *_argv(option, _example(option))]))
    assert (before != after) == option.fingerprint, (
        f"{option.key}: the table says fingerprint={option.fingerprint}, plan.fingerprint disagrees")
    if option.key in TWO_STEP_ONLY:
        chat_audio = _settings(["/tmp/in", "-o", "/tmp/o"])
        assert plan.fingerprint(document, chat_audio) == plan.fingerprint(document, dataclasses.replace(
            chat_audio, text_model="x", tts_model="y", voice_instructions="z")), "chat-audio ignores them"


# Job-file values in their natural TOML type, and the command line each stands for (issue 27): a number where the
# option means a number, true/false where it means yes/no, an array where it means a list.
NATURAL = [
    ("loudness", "-18", ["--loudness", "-18"]),
    ("loudness", "-18.5", ["--loudness", "-18.5"]),
    ("ray_actors", "3", ["--ray-actors", "3"]),
    ("ray_actors", "[2, 6]", ["--ray-actors", "2,6"]),
    ("podcast_locked", "false", ["--podcast-locked", "no"]),
    ("podcast_locked", "true", ["--podcast-locked", "yes"]),
]


@pytest.mark.parametrize("key, toml, argv", NATURAL, ids=lambda part: str(part))
def test_a_job_value_in_its_natural_toml_type_means_what_the_command_line_does(
        tmp_path: Path, key: str, toml: str, argv: list[str]) -> None:
    from_job = _settings(["--job", str(_job(tmp_path, [f"{key} = {toml}"]))])
    from_cli = _settings(["/tmp/in", "-o", "/tmp/audiosum-settings-out", *argv])
    assert dataclasses.asdict(from_job) == dataclasses.asdict(from_cli)


def test_every_natural_form_a_row_declares_is_tried() -> None:
    """Each TOML form a row of the table takes besides its kind's own has a case in NATURAL, and each row whose
    command-line value is a number, a yes/no or a list of numbers declares one."""
    for option in JOB_OPTIONS:
        for form in option.toml:
            assert any(form.read(tomllib.loads(f"v = {toml}")["v"]) is not None
                       for key, toml, _ in NATURAL if key == option.key), f"{option.key}: no case of {form.name}"
    assert {key for key, _, _ in NATURAL} <= {option.key for option in JOB_OPTIONS if option.toml}


def test_a_job_file_can_set_what_it_could_not_before(tmp_path: Path) -> None:
    lines = ['format = "mp3"', 'loudness = "-20"', 'mode = "narrate"', 'api_base = "http://127.0.0.1:9/v1"',
             'keep = 7', 'since = 2026-11-01', 'max_items = 3', 'retry_backoff = 0.25',
             'podcast_url = "https://pods.example.org/feed/"', 'force = true', 'allow_private_links = true']
    settings = _settings(["--job", str(_job(tmp_path, lines))])
    assert (settings.audio_format, settings.loudness_lufs, settings.mode, settings.api_base, settings.podcast_keep,
            settings.since.isoformat() if settings.since else None, settings.max_items, settings.retry_backoff_s,
            settings.podcast_url, settings.force, settings.allow_private_links) == (
        "mp3", -20.0, "narrate", "http://127.0.0.1:9/v1", 7, "2026-11-01T00:00:00+00:00", 3, 0.25,
        "https://pods.example.org/feed/", True, True)


def test_loudness_is_part_of_the_settings_fingerprint() -> None:
    from pipeline.plan import fingerprint

    document = Document(id="a", source="a", text="t", sha256="s")
    plain = RunSettings(inputs=("x",), out_dir=Path("o"))
    loud = RunSettings(inputs=("x",), out_dir=Path("o"), loudness_lufs=-19.0)
    assert fingerprint(document, plain) != fingerprint(document, loud)


def test_an_env_file_is_read_as_written(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "openai.env", "\n".join([
        "# the nightly job's key", "", "export OPENAI_API_KEY = 'sk-from-file # not a comment'  # a comment",
        'OPENAI_BASE_URL="http://127.0.0.1:9/v1"', "OTHER=ignored", "EMPTY=", ""]))
    assert read_env_file(path) == {"OPENAI_API_KEY": "sk-from-file # not a comment",
                                   "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    plain = _env_file(tmp_path, "plain.env", "OPENAI_API_KEY=sk-plain-value # trailing comment\n")
    assert read_env_file(plain) == {"OPENAI_API_KEY": "sk-plain-value"}


@pytest.mark.parametrize("text", ["OPENAI_API_KEY sk-no-equals\n", "OPENAI_API_KEY='sk-unclosed\n",
                                  "OPENAI_API_KEY=\"sk-x\" junk\n"])
def test_a_line_that_is_not_key_value_names_the_line_not_its_text(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_env_file(_env_file(tmp_path, "bad.env", "# first\n" + text))
    assert "line 2" in str(caught.value) and "sk-" not in str(caught.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_an_env_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = _env_file(tmp_path, "open.env", "OPENAI_API_KEY=sk-secret-value\n", mode)
    with pytest.raises(UsageError) as caught:
        read_env_file(path)
    assert f"chmod 600 {path}" in str(caught.value) and "sk-secret" not in str(caught.value)


def test_the_environment_wins_over_the_env_file_and_the_file_fills_what_it_lacks(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "openai.env", "OPENAI_API_KEY=sk-from-the-file\nOPENAI_BASE_URL=http://127.0.0.1:7/v1\n")
    from_file = _settings(["/tmp/in", "-o", "/tmp/o", "--env-file", str(path)], env={"OPENAI_API_KEY": ""})
    assert (from_file.api_key, from_file.api_base, from_file.provider) == (
        "sk-from-the-file", "http://127.0.0.1:7/v1", "openai")
    exported = _settings(["/tmp/in", "-o", "/tmp/o", "--env-file", str(path)],
                         env={"OPENAI_API_KEY": "sk-exported", "OPENAI_BASE_URL": "http://127.0.0.1:5/v1"})
    assert (exported.api_key, exported.api_base) == ("sk-exported", "http://127.0.0.1:5/v1")
    typed = _settings(["/tmp/in", "-o", "/tmp/o", "--env-file", str(path), "--api-base", "http://127.0.0.1:6/v1"])
    assert typed.api_base == "http://127.0.0.1:6/v1"


def test_a_renamed_option_is_read_under_its_old_name_with_a_warning(tmp_path: Path) -> None:
    """--base-url became --podcast-url (the API's URL is --api-base): the old flag and job key still work for one
    release, each with a warning that names the new one; the new name wins when both are given."""
    from runs import child_env, run_cli

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("The ferry runs twice a day.\n")
    old_flag = run_cli("run", str(folder), "-o", str(tmp_path / "o1"), "--dry-run", "--base-url",
                       "https://pods.example.org/old/", env=child_env())
    assert old_flag.exit_code == 0, old_flag.stderr
    assert "--base-url is now --podcast-url" in old_flag.stderr
    job = tmp_path / "job.toml"
    job.write_text(f'inputs = ["{folder}"]\nout = "{tmp_path / "o2"}"\nbase_url = "https://pods.example.org/job/"\n')
    old_key = run_cli("run", "--job", str(job), "--dry-run", env=child_env())
    assert old_key.exit_code == 0, old_key.stderr
    assert "key 'base_url' is now 'podcast_url'" in old_key.stderr
    settings = _settings(["--job", str(job)])
    assert settings.podcast_url == "https://pods.example.org/job/"
    both = _settings(["/tmp/in", "-o", "/tmp/o", "--base-url", "https://a.example/", "--podcast-url",
                      "https://b.example/"])
    assert both.podcast_url == "https://b.example/"
    assert _settings(["/tmp/in", "-o", "/tmp/o", "--base-url", "https://a.example/"]).podcast_url == "https://a.example/"
