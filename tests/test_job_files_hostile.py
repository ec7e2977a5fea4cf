"""Hostile job and env files: nesting deep enough to exhaust the parser, FIFOs, devices and folders, files too large to
be settings, and a job file that sends the key to its own server. Each is one line on stderr (a usage error, exit 2,
naming the file; or a warning), never a traceback or a hang.

Whole runs through the CLI in this process (run_cli) with --dry-run: nothing is sent, nothing touches the network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runs import child_env, one_document, run_cli

KEY = "sk-test-hostile-job-0123456789abcdef"
JOB_BASE = "http://127.0.0.2:9/v1"  # never contacted: every run here is a dry run
ENV_BASE = "http://127.0.0.3:9/v1"


def _job(folder: Path, text: str, name: str = "job.toml") -> Path:
    """A valid job (one document, an output folder next to it) followed by `text`."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = folder / "in"
    if not docs.exists():
        one_document(folder)
    path = folder / name
    path.write_text(f'inputs = ["{docs}"]\nout = "{folder / "out"}"\n{text}\n', encoding="utf-8")
    return path


def _one_usage_error(result, path: Path, *words: str) -> str:
    """Exit 2 with exactly one line on stderr that names the file (and holds `words`), no traceback."""
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith("audiosum: error: ") and str(path) in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _env_file(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


# --- nesting: the TOML parser recurses per level, and dotted keys cost it memory in the square of their length ---

DEEP = {
    "arrays": "a = " + "[" * 100_000,
    "inline tables": "a = " + "{b = " * 3_000 + "1" + "}" * 3_000,
    "dotted key": "a" + ".a" * 2_000 + " = 1",
    "table header": "[" + "a." * 2_000 + "a]\nx = 1",
}


@pytest.mark.parametrize("body", DEEP.values(), ids=DEEP.keys())
def test_a_deeply_nested_job_file_is_a_usage_error(tmp_path: Path, body: str) -> None:
    job = _job(tmp_path, body)
    _one_usage_error(run_cli("run", "--job", str(job), "--dry-run"), job, "job file", "nested")


def test_a_long_dotted_key_is_refused_before_the_parser_spends_memory_on_it(tmp_path: Path) -> None:
    # 20,000 parts take tomllib about 1.5 GB (its bookkeeping grows with the square of a key's length).
    job = _job(tmp_path, "a" + ".a" * 20_000 + " = 1")
    _one_usage_error(run_cli("run", "--job", str(job), "--dry-run"), job, "nested")


def test_jobs_lists_a_deeply_nested_file_as_broken_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    _job(folder, 'description = "first"', "a-first.toml")
    _job(folder, DEEP["arrays"], "b-deep.toml")
    _job(folder, 'description = "last"', "c-last.toml")
    result = run_cli("jobs", str(folder))
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["a-first", "first"] and lines[2].split()[0] == "b-deep"
    assert "BROKEN: job file" in lines[2] and str(folder / "b-deep.toml") in lines[2] and "nested" in lines[2]
    assert lines[3].split() == ["c-last", "last"] and len(lines) == 5


# --- a FIFO, a device or a folder where a file of settings belongs: refused at once, never waited on ---

@pytest.mark.timeout(20)
def test_a_fifo_as_env_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "openai.env"
    os.mkfifo(fifo, 0o600)
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--env-file", str(fifo),
                     "--dry-run")
    _one_usage_error(result, fifo, "env file", "not a regular file", "FIFO")


@pytest.mark.timeout(20)
def test_a_fifo_named_by_a_jobs_env_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "openai.env"
    os.mkfifo(fifo, 0o600)
    job = _job(tmp_path, f'env_file = "{fifo}"')
    _one_usage_error(run_cli("run", "--job", str(job), "--dry-run"), fifo, "env file", "not a regular file")


@pytest.mark.timeout(20)
def test_a_fifo_as_job_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "job.toml"
    os.mkfifo(fifo, 0o600)
    _one_usage_error(run_cli("run", "--job", str(fifo), "--dry-run"), fifo, "job file", "not a regular file", "FIFO")


@pytest.mark.timeout(20)
def test_jobs_lists_a_fifo_as_broken_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    _job(folder, 'description = "fine"', "b-fine.toml")
    os.mkfifo(folder / "a-fifo.toml", 0o600)
    result = run_cli("jobs", str(folder))
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "a-fifo" and "BROKEN" in lines[0] and "not a regular file" in lines[0]
    assert lines[1].split() == ["b-fine", "fine"]


def test_a_device_as_env_file_is_refused_as_a_device_not_for_its_mode(tmp_path: Path) -> None:
    # /dev/null is mode 0666: the advice must not be to chmod a device.
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--env-file", "/dev/null",
                     "--dry-run")
    line = _one_usage_error(result, Path("/dev/null"), "env file", "not a regular file", "device")
    assert "chmod" not in line


def test_a_job_file_linked_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "null.toml"
    link.symlink_to("/dev/null")
    _one_usage_error(run_cli("run", "--job", str(link), "--dry-run"), link, "job file", "not a regular file")


def test_a_folder_as_env_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "openai.env"
    folder.mkdir(mode=0o700)
    result = run_cli("run", str(one_document(tmp_path)), "-o", str(tmp_path / "out"), "--env-file", str(folder),
                     "--dry-run")
    _one_usage_error(result, folder, "env file", "not a regular file", "folder")


# --- size: an env file is a few lines, a job file a page; neither is read past its cap, nor cut at it ---

def test_an_env_file_over_64_kb_is_refused_and_one_at_the_cap_is_read(tmp_path: Path) -> None:
    line = f"OPENAI_API_KEY={KEY}\n"
    docs = one_document(tmp_path)
    at_cap = _env_file(tmp_path / "at-cap.env", line + "#" * (64 * 1024 - len(line) - 1) + "\n")
    assert at_cap.stat().st_size == 64 * 1024
    fine = run_cli("run", str(docs), "-o", str(tmp_path / "out"), "--env-file", str(at_cap), "--dry-run")
    assert fine.exit_code == 0, fine.stderr
    over = _env_file(tmp_path / "over.env", line + "#" * (64 * 1024 - len(line)) + "\n")
    result = run_cli("run", str(docs), "-o", str(tmp_path / "out"), "--env-file", str(over), "--dry-run")
    line_shown = _one_usage_error(result, over, "env file", "larger than 64 KB")
    assert KEY not in result.stderr and KEY not in line_shown


def test_a_job_file_over_its_cap_is_refused(tmp_path: Path) -> None:
    job = _job(tmp_path, "# padding\n" * 30_000)  # 300 KB of comments around a valid job
    _one_usage_error(run_cli("run", "--job", str(job), "--dry-run"), job, "job file", "larger than 256 KB")


# --- a job file's api_base decides where the key goes: say so when it is not where the environment points ---

def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("audiosum: warning:")]


def _planned_base(out: Path) -> str:
    return json.loads((out / "dry-run.json").read_text())["settings"]["api_base"]


def test_a_job_files_api_base_is_warned_about_when_a_key_is_set(tmp_path: Path) -> None:
    job = _job(tmp_path, f'api_base = "{JOB_BASE}"')
    result = run_cli("run", "--job", str(job), "--dry-run", env=child_env(OPENAI_API_KEY=KEY))
    assert result.exit_code == 0, result.stderr
    warned = _warnings(result.stderr)
    assert len(warned) == 1, result.stderr
    assert str(job) in warned[0] and JOB_BASE in warned[0] and "https://api.openai.com/v1" in warned[0]
    assert "trust" in warned[0]
    assert KEY not in result.stderr and KEY not in result.stdout
    assert _planned_base(tmp_path / "out") == JOB_BASE  # the warning is true: the run would send the key there


def test_a_job_files_api_base_is_warned_about_in_a_json_log(tmp_path: Path) -> None:
    job = _job(tmp_path, f'api_base = "{JOB_BASE}"')
    result = run_cli("run", "--job", str(job), "--dry-run", "--log-format", "json", env=child_env(OPENAI_API_KEY=KEY))
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    warned = [event for event in events if event["event"] == "warning"]
    assert len(warned) == 1 and warned[0]["option"] == "api_base" and JOB_BASE in warned[0]["message"]
    assert KEY not in result.stderr


def test_a_key_from_the_jobs_env_file_is_warned_about_too(tmp_path: Path) -> None:
    env_file = _env_file(tmp_path / "openai.env", f"OPENAI_API_KEY={KEY}\n")
    job = _job(tmp_path, f'api_base = "{JOB_BASE}"\nenv_file = "{env_file}"')
    result = run_cli("run", "--job", str(job), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert len(_warnings(result.stderr)) == 1 and KEY not in result.stderr


def test_a_job_files_api_base_that_the_environment_overrides_is_warned_about_as_unused(tmp_path: Path) -> None:
    job = _job(tmp_path, f'api_base = "{JOB_BASE}"')
    result = run_cli("run", "--job", str(job), "--dry-run", env=child_env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=ENV_BASE))
    assert result.exit_code == 0, result.stderr
    warned = _warnings(result.stderr)
    assert len(warned) == 1 and JOB_BASE in warned[0] and ENV_BASE in warned[0] and "OPENAI_BASE_URL" in warned[0]
    assert _planned_base(tmp_path / "out") == ENV_BASE  # the environment wins, as the warning says


@pytest.mark.parametrize("case", ["no key", "same as the environment", "the default", "typed on the command line"])
def test_no_warning_when_the_job_does_not_move_the_key(tmp_path: Path, case: str) -> None:
    base = "https://api.openai.com/v1/" if case == "the default" else JOB_BASE
    job = _job(tmp_path, f'api_base = "{base}"')
    env = {"no key": child_env(), "same as the environment": child_env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=JOB_BASE),
           }.get(case, child_env(OPENAI_API_KEY=KEY))
    typed = ["--api-base", JOB_BASE] if case == "typed on the command line" else []
    result = run_cli("run", "--job", str(job), "--dry-run", *typed, env=env)
    assert result.exit_code == 0, result.stderr
    assert _warnings(result.stderr) == []
