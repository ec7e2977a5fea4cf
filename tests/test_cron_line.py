"""The README's crontab line, run as cron runs it: an empty environment (`env -i`), the key only in a 0600 env file,
against `audiosum serve`; every line it appends to its log is JSON, whatever goes wrong. And every error of a
`--log-format json` run is a JSON event: click's usage errors, a refused key, a crash."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from peers import SERVER_KEY, RunningServer, api_env
from runs import REPO, SAMPLE_INPUTS, child_env, copy_text_samples, run_cli

# Exactly the line README.md proposes; the test substitutes the checkout, the interpreter and the log path the way a
# user would edit them.
CRON_LINE = ("15 2 * * *  cd /srv/audiosum && .venv/bin/audiosum run --job jobs/nightly-openai.toml "
             "--env-file ~/.config/audiosum/openai.env --log-format json -q 2>>/var/log/audiosum.jsonl")
ENV_FILE = ".config/audiosum/openai.env"


def _command(checkout: Path, log: Path) -> str:
    """The line's command (cron's five schedule fields removed), with this checkout, this interpreter running the
    checkout's code (`-m pipeline` from the checkout's folder, as .venv/bin/audiosum would) and this log."""
    command = CRON_LINE.split(None, 5)[5]
    for placeholder, value in (("/srv/audiosum", shlex.quote(str(checkout))),
                               (".venv/bin/audiosum", f"{shlex.quote(sys.executable)} -m pipeline"),
                               ("/var/log/audiosum.jsonl", shlex.quote(str(log)))):
        assert placeholder in command
        command = command.replace(placeholder, value)
    return command


def _checkout(tmp_path: Path) -> Path:
    """A checkout as cron finds it: the shipped nightly job, its inputs and the code (linked, not copied)."""
    checkout = tmp_path / "audiosum"
    (checkout / "jobs").mkdir(parents=True)
    shutil.copy2(REPO / "jobs" / "nightly-openai.toml", checkout / "jobs")
    copy_text_samples(checkout / "sample_inputs")
    (checkout / "pipeline").symlink_to(REPO / "pipeline")
    return checkout


def _home(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    home = tmp_path / "home"
    env_file = home / ENV_FILE
    env_file.parent.mkdir(parents=True)
    env_file.write_text(text)
    os.chmod(env_file, mode)
    return home


def _cron(home: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=180)


def _log_events(log: Path) -> list[dict]:
    lines = log.read_text().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line parses, or the test fails here


def _keyed(server: RunningServer) -> str:
    return f"# the nightly job's key\nOPENAI_BASE_URL={server.base_url}\nexport OPENAI_API_KEY='{server.key}'\n"


def test_the_crontab_line_runs_in_an_empty_environment(tone_server: RunningServer, tmp_path: Path) -> None:
    checkout, log = _checkout(tmp_path), tmp_path / "audiosum.jsonl"
    before = tone_server.stats()["counts"]["requests"]
    done = _cron(_home(tmp_path, _keyed(tone_server)), _command(checkout, log))
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()
    events = _log_events(log)
    assert events[0]["event"] == "run_start" and events[-1]["event"] == "run_end"
    manifest = (checkout / "sample_inputs" / "manifest.jsonl").read_text().splitlines()
    documents = [e for e in events if e["event"] == "document"]
    assert len(documents) == len(manifest) and {e["status"] for e in documents} == {"done"}
    assert tone_server.stats()["counts"]["requests"] > before
    report = json.loads((checkout / "out" / "nightly" / "report.json").read_text())
    assert report["status"] == "finished" and report["settings"]["provider"] == "openai"
    assert SERVER_KEY not in log.read_text() + done.stdout + done.stderr + json.dumps(report)


def test_the_crontab_line_with_no_key_anywhere_logs_a_json_error(tmp_path: Path) -> None:
    checkout, log = _checkout(tmp_path), tmp_path / "audiosum.jsonl"
    log.write_text('{"event": "run_end", "status": "finished"}\n')  # an earlier night's line: appended to
    failed = _cron(_home(tmp_path, "# no key here yet\n"), _command(checkout, log))
    assert failed.returncode == 2, failed.stdout + failed.stderr
    events = _log_events(log)
    assert len(events) == 2 and events[-1]["event"] == "error"
    assert events[-1]["kind"] == "usage" and events[-1]["exit_code"] == 2
    assert "OPENAI_API_KEY" in events[-1]["message"]


def test_the_crontab_line_refuses_an_env_file_others_can_read(tone_server: RunningServer, tmp_path: Path) -> None:
    checkout, log = _checkout(tmp_path), tmp_path / "audiosum.jsonl"
    home = _home(tmp_path, _keyed(tone_server), mode=0o644)
    before = tone_server.stats()["counts"]["requests"]
    refused = _cron(home, _command(checkout, log))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (event,) = _log_events(log)
    assert event["event"] == "error" and event["kind"] == "usage" and event["exit_code"] == 2
    assert f"chmod 600 {home / ENV_FILE}" in event["message"]
    assert tone_server.stats()["counts"]["requests"] == before
    assert SERVER_KEY not in log.read_text() + refused.stdout


def _json_stderr(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


@pytest.mark.parametrize("options", [("--words", "many"), ("--no-such-option",), ()])
def test_clicks_own_usage_errors_are_json_events(tmp_path: Path, options: tuple[str, ...]) -> None:
    result = run_cli("run", *((str(SAMPLE_INPUTS / "news"),) if options else ()), "-o", str(tmp_path / "out"),
                     "--log-format", "json", *options)
    assert result.exit_code == 2
    (event,) = _json_stderr(result.stderr)
    assert (event["event"], event["kind"], event["exit_code"]) == ("error", "usage", 2) and event["message"]


def test_a_refused_key_is_a_json_event_that_says_what_was_sent(tone_server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "news", folder)
    wrong = "sk-wrong-key-0123456789abcdef"
    before = tone_server.stats()["counts"]["requests"]
    result = run_cli("run", str(folder), "-o", str(tmp_path / "out"), "--log-format", "json",
                     env=api_env(tone_server, key=wrong))
    assert result.exit_code == 2
    events = _json_stderr(result.stderr)
    error = events[-1]
    assert (error["event"], error["kind"], error["exit_code"]) == ("error", "stopped", 2)
    # The key is refused at the model check, before any document: nothing was sent, and the message says so.
    assert tone_server.stats()["counts"]["requests"] - before == 0
    assert "refused the key" in error["message"] and "no document was sent" in error["message"]
    assert wrong not in result.stderr + result.stdout


def test_a_crash_is_a_json_event_without_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import runner

    secret = "sk-crash-test-0123456789abcdef"

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"a bug holding {secret}\nover two lines")

    monkeypatch.setattr(runner, "run", crash)
    result = run_cli("run", str(SAMPLE_INPUTS / "news"), "-o", str(tmp_path / "out"), "--log-format", "json",
                     env=child_env(OPENAI_API_KEY=secret, OPENAI_BASE_URL="http://127.0.0.1:9/v1"))
    assert result.exit_code == 1
    (event,) = _json_stderr(result.stderr)
    assert (event["event"], event["kind"], event["exit_code"]) == ("error", "crash", 1)
    assert "RuntimeError" in event["message"] and "RuntimeError" in event["traceback"]
    assert secret not in result.stderr
