"""Job files: the shipped ones load, every key is checked, paths resolve as documented, keys are refused.

Pure unit tests over tmp_path; nothing runs and nothing touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.jobs import BrokenJob, JobFile, job_base_dir, list_jobs, load_job

REPO = Path(__file__).resolve().parent.parent
MINIMAL = 'inputs = ["docs"]\nout = "out"\n'


def write_job(folder: Path, text: str, name: str = "job.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(UsageError) as caught:
        load_job(path)
    return str(caught.value)


def test_sample_offline_job_loads() -> None:
    job = load_job(REPO / "jobs" / "sample-offline.toml")
    assert job.name == "sample-offline"
    assert job.description
    assert job.values == {
        "inputs": (str(REPO / "sample_inputs"),),
        "out": str(REPO / "out" / "sample-offline"),
        "provider": "local",
        "words": 120,
    }
    assert job.prices == {}


def test_nightly_openai_job_loads() -> None:
    job = load_job(REPO / "jobs" / "nightly-openai.toml")
    assert job.name == "nightly-openai"
    assert job.values["inputs"] == (str(REPO / "sample_inputs" / "manifest.jsonl"),)
    assert job.values["out"] == str(REPO / "out" / "nightly")
    assert job.values["provider"] == "openai"
    assert job.values["model"] == "gpt-audio-1.5"  # the default model (tests/test_docs_in_step.py)
    assert job.values["voice"] == "coral"
    assert job.values["words"] == 90
    assert job.values["concurrency"] == 8
    assert job.values["rpm"] == 500
    assert job.values["tpm"] == 200000
    assert job.values["max_attempts"] == 6
    assert job.values["timeout"] == 120.0 and isinstance(job.values["timeout"], float)
    assert set(job.prices) == {"text_input_per_1m", "text_output_per_1m", "audio_input_per_1m",
                               "audio_output_per_1m"}
    assert all(isinstance(v, float) and v > 0 for v in job.prices.values())
    assert "OPENAI_API_KEY" in (REPO / "jobs" / "nightly-openai.toml").read_text(encoding="utf-8")


def test_every_key_maps_to_its_value_key(tmp_path: Path) -> None:
    path = write_job(tmp_path, """
description = "all of it"
inputs = ["a", "b"]
out = "o"
provider = "auto"
model = "m"
voice = "v"
words = 10
instructions = "Say it in {words} words."
concurrency = 512
workers = 64
api_base = "http://127.0.0.1:8000/v1"
timeout = 1
rpm = 0
tpm = 0
max_attempts = 20
[prices]
text_input_per_1m = 1
""")
    job = load_job(path)
    assert job.description == "all of it"
    assert job.values == {
        "inputs": (str(tmp_path / "a"), str(tmp_path / "b")), "out": str(tmp_path / "o"),
        "provider": "auto", "model": "m", "voice": "v", "words": 10, "instructions": "Say it in {words} words.",
        "concurrency": 512, "workers": 64, "api_base": "http://127.0.0.1:8000/v1", "timeout": 1.0,
        "rpm": 0, "tpm": 0, "max_attempts": 20,
    }
    assert job.prices == {"text_input_per_1m": 1.0}


def test_values_hold_only_the_keys_the_file_sets(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, MINIMAL))
    assert set(job.values) == {"inputs", "out"}
    assert job.description is None


def test_paths_in_a_jobs_folder_resolve_against_its_parent(tmp_path: Path) -> None:
    project = tmp_path / "project"
    path = write_job(project / "jobs", 'inputs = ["docs", "../shared/m.jsonl", "/abs/x"]\nout = "out/n"\n'
                                       'env_file = "jobs/n.env"\n')
    job = load_job(path)
    assert job_base_dir(path) == project
    assert job.values["inputs"] == (str(project / "docs"), str(tmp_path / "shared" / "m.jsonl"), "/abs/x")
    assert job.values["out"] == str(project / "out" / "n")
    assert job.values["env_file"] == str(project / "jobs" / "n.env")


def test_paths_elsewhere_resolve_against_the_job_files_folder(tmp_path: Path) -> None:
    path = write_job(tmp_path / "cron", MINIMAL + 'env_file = "secrets/openai.env"\n')
    job = load_job(path)
    assert job.values["inputs"] == (str(tmp_path / "cron" / "docs"),)
    assert job.values["out"] == str(tmp_path / "cron" / "out")
    assert job.values["env_file"] == str(tmp_path / "cron" / "secrets" / "openai.env")


def test_paths_do_not_depend_on_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_job(tmp_path / "jobs", MINIMAL)
    monkeypatch.chdir(tmp_path / "jobs")
    job = load_job(Path("job.toml"))
    assert job.values["inputs"] == (str(tmp_path / "docs"),)
    assert os.path.isabs(job.values["out"])


def test_unknown_key_names_file_and_key_and_suggests(tmp_path: Path) -> None:
    path = write_job(tmp_path, MINIMAL + "wrods = 90\n")
    message = load_error(path)
    assert str(path) in message
    assert "'wrods'" in message
    assert "did you mean 'words'" in message


def test_unknown_key_without_a_close_match_lists_known_keys(tmp_path: Path) -> None:
    message = load_error(write_job(tmp_path, MINIMAL + "zzzzqqq = 1\n"))
    assert "'zzzzqqq'" in message and "did you mean" not in message and "known keys" in message


def test_wrong_type_names_key_expected_and_given(tmp_path: Path) -> None:
    path = write_job(tmp_path, MINIMAL + 'words = "ninety"\n')
    message = load_error(path)
    assert str(path) in message
    assert "'words'" in message and "integer" in message and "got string" in message


@pytest.mark.parametrize("line, key", [
    ("words = true", "words"),
    ("concurrency = false", "concurrency"),
    ("max_attempts = true", "max_attempts"),
    ("timeout = true", "timeout"),
])
def test_a_boolean_is_not_a_number(tmp_path: Path, line: str, key: str) -> None:
    message = load_error(write_job(tmp_path, MINIMAL + line + "\n"))
    assert f"'{key}'" in message and "got boolean" in message


@pytest.mark.parametrize("line, key", [
    ("words = 90.0", "words"),
    ('inputs = "docs"', "inputs"),
    ("inputs = [1]", "inputs[0]"),
    ("model = 4", "model"),
    ("timeout = \"fast\"", "timeout"),
    ("prices = 3", "prices"),
    ("[prices]\ntext_input_per_1m = \"cheap\"", "prices.text_input_per_1m"),
])
def test_other_wrong_types(tmp_path: Path, line: str, key: str) -> None:
    text = (MINIMAL + line + "\n") if not line.startswith("inputs") else f'{line}\nout = "o"\n'
    message = load_error(write_job(tmp_path, text))
    assert f"'{key}'" in message and "must be" in message and "got" in message


@pytest.mark.parametrize("line, key, forms", [
    ("loudness = true", "loudness", ["a number", "a string (LUFS|off)"]),
    ("loudness = [-18]", "loudness", ["a number", "a string (LUFS|off)"]),
    ("ray_actors = 2.5", "ray_actors", ["an integer", "[MIN, MAX]", "a string (MIN,MAX)"]),
    ("ray_actors = [1, 2, 3]", "ray_actors", ["an integer", "[MIN, MAX]", "a string (MIN,MAX)"]),
    ('ray_actors = [1, "4"]', "ray_actors", ["an integer", "[MIN, MAX]", "a string (MIN,MAX)"]),
    ("podcast_locked = 1", "podcast_locked", ["true or false", "a string"]),
])
def test_a_wrong_toml_type_names_every_form_the_key_takes(tmp_path: Path, line: str, key: str,
                                                          forms: list[str]) -> None:
    """A key that takes a number, a boolean or an array besides a string says so when given something else, in one
    line."""
    message = load_error(write_job(tmp_path, MINIMAL + line + "\n"))
    assert f"'{key}'" in message and "\n" not in message and "got " in message
    assert all(form in message for form in forms), message


def test_natural_types_load_as_the_command_line_would_give_them(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, MINIMAL + "loudness = -18\nray_actors = [2, 6]\npodcast_locked = false\n"))
    assert (job.values["loudness"], job.values["ray_actors"], job.values["podcast_locked"]) == ("-18", "2,6", "no")


@pytest.mark.parametrize("line, key", [
    ("words = 9", "words"), ("words = 2001", "words"),
    ("concurrency = 0", "concurrency"), ("concurrency = 513", "concurrency"),
    ("workers = 0", "workers"), ("workers = 65", "workers"),
    ("timeout = 0.5", "timeout"), ("timeout = 3601", "timeout"), ("timeout = nan", "timeout"),
    ("rpm = -1", "rpm"), ("tpm = -5", "tpm"),
    ("max_attempts = 0", "max_attempts"), ("max_attempts = 21", "max_attempts"),
    ("timeout = inf", "timeout"),
    ('provider = "cloud"', "provider"),
    ("[prices]\naudio_output_per_1m = -1", "prices.audio_output_per_1m"),
])
def test_out_of_range_is_rejected(tmp_path: Path, line: str, key: str) -> None:
    message = load_error(write_job(tmp_path, MINIMAL + line + "\n"))
    assert f"'{key}'" in message


def test_invalid_toml_names_the_file_and_tomllib_reason(tmp_path: Path) -> None:
    path = write_job(tmp_path, MINIMAL + "words = = 3\n")
    message = load_error(path)
    assert str(path) in message and "invalid TOML" in message and "line 3" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    message = load_error(path)
    assert str(path) in message and "cannot read" in message


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'description = "caf\xe9"\n' + MINIMAL.encode())
    assert str(path) in load_error(path)


@pytest.mark.parametrize("text", [
    'api_key = "sk-secret-123"',
    'openai_api_key = "sk-secret-123"',
    'OPENAI_API_KEY = "sk-secret-123"',
    '"api-key" = "sk-secret-123"',
    '[prices]\napi_key = "sk-secret-123"',
    'apikey = "sk-secret-123"',
    'token = "sk-secret-123"',
    'OPENAI-KEY = "sk-secret-123"',
])
def test_an_api_key_in_a_job_is_refused_with_the_env_hint(tmp_path: Path, text: str) -> None:
    path = write_job(tmp_path, MINIMAL + text + "\n")
    message = load_error(path)
    assert str(path) in message and "OPENAI_API_KEY" in message and "environment" in message
    assert "sk-secret-123" not in message


@pytest.mark.parametrize("text, key", [
    ('out = "o"\n', "inputs"),
    ('inputs = ["docs"]\n', "out"),
    ('inputs = []\nout = "o"\n', "inputs"),
    ('inputs = ["docs"]\nout = ""\n', "out"),
    ('inputs = [""]\nout = "o"\n', "inputs[0]"),
])
def test_missing_or_empty_inputs_and_out_are_rejected(tmp_path: Path, text: str, key: str) -> None:
    message = load_error(write_job(tmp_path, text))
    assert f"'{key}'" in message or f"{key} " in message


def test_unknown_price_key_is_rejected(tmp_path: Path) -> None:
    path = write_job(tmp_path, MINIMAL + "[prices]\ntext_input_per_1k = 2.5\n")
    message = load_error(path)
    assert str(path) in message
    assert "'prices.text_input_per_1k'" in message and "did you mean 'prices.text_input_per_1m'" in message


def test_list_jobs_returns_good_and_bad_files_sorted(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    write_job(folder, MINIMAL + 'description = "fine"\n', "b-good.toml")
    write_job(folder, MINIMAL + "wrods = 3\n", "a-bad.toml")
    write_job(folder, "not [ toml", "c-broken.toml")
    write_job(folder, MINIMAL, ".hidden.toml")
    write_job(folder, "ignored", "notes.txt")
    listed = list_jobs(folder)
    assert [entry.name for entry in listed] == ["a-bad", "b-good", "c-broken"]
    bad, good, broken = listed
    assert isinstance(good, JobFile) and good.description == "fine"
    assert isinstance(bad, BrokenJob) and "'wrods'" in bad.reason and str(bad.path) in bad.reason
    assert isinstance(broken, BrokenJob) and "invalid TOML" in broken.reason


def test_list_jobs_on_the_shipped_folder_loads_everything() -> None:
    listed = list_jobs(REPO / "jobs")
    assert {entry.name for entry in listed} >= {"sample-offline", "nightly-openai"}
    assert all(isinstance(entry, JobFile) for entry in listed)


def test_list_jobs_on_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        list_jobs(tmp_path / "nope")


def test_brackets_and_dots_in_strings_comments_and_numbers_are_not_nesting(tmp_path: Path) -> None:
    # The depth check reads the text before tomllib does: what only looks deep must still load.
    path = write_job(tmp_path, MINIMAL + "\n".join([
        "# [[[[[[[[[[[[[[[[[[ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s",
        'instructions = "Say [[[[[[[[[[[[[[[[[[ {{{{{{{{{{{{{{{{{{ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s \\" [[["',
        "voice_instructions = '''",
        "[[[[[[[[[[[[[[[[[[ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s = 1 ''''' ",
        'description = """ "" a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s [[[[[[[[[[[[[[[[[[ """""',
        "timeout = 1.5",
        "since = 2026-11-01T00:32:00.999999",
        "[prices]",
        "text_input_per_1m = 2.5",
    ]) + "\n")
    job = load_job(path)
    assert job.values["instructions"].startswith("Say [[[[") and job.values["timeout"] == 1.5
    assert job.values["voice_instructions"].startswith("[[[[") and job.description.endswith('[[[[ ""')


@pytest.mark.parametrize("levels", [16, 17])
@pytest.mark.parametrize("shape", ["array", "inline table", "dotted key", "table header"])
def test_nesting_past_16_levels_is_refused_before_parsing(tmp_path: Path, shape: str, levels: int) -> None:
    # Each shape `levels` deep: a level is an array, an inline table or a dotted key's part after its first. The
    # key `x` is unknown, which is what a file within the limit is told.
    body = {"array": "x = " + "[" * levels + "1" + "]" * levels,
            "inline table": "x = " + "{k = " * levels + "1" + "}" * levels,
            "dotted key": "x" + ".k" * levels + " = 1",
            "table header": "[x" + ".k" * (levels - 1) + "]"}[shape]
    message = load_error(write_job(tmp_path, MINIMAL + body + "\n"))
    assert ("nested more than 16 levels" in message) is (levels > 16), message
    assert ("unknown key 'x'" in message) is (levels <= 16), message
