"""Running audiosum as a user would, for tests: the CLI in this process or as a process, the environment it sees,
small inputs, the checks every run's output folder must pass, and waiting for an event (never for a time).

Helpers only (no fixtures: tests/conftest.py holds those); nothing here listens on a port or starts a server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INPUTS = REPO / "sample_inputs"
RECORDINGS = "voice-notes"  # sample_inputs/' folder of recordings: hearing its mp3 takes seconds on every fresh run
SCRUBBED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "http_proxy", "https_proxy", "all_proxy", "AUDIOSUM_SERVE_API_KEY")
T = TypeVar("T")


def until(condition: Callable[[], T], what: str, *, deadline_s: float = 120.0,
          process: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None, every_s: float = 0.01) -> T:
    """Poll until condition() is truthy and return what it returned. The deadline only bounds a hang (a broken
    server, a stuck run): no outcome depends on it. With `process`, fail at once if it exits first."""
    deadline = time.monotonic() + deadline_s
    while not (result := condition()):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {deadline_s:g} s")
        time.sleep(every_s)  # polling a condition, not waiting out a window
    return result


def copy_text_samples(destination: Path, *, manifest: bool = True) -> Path:
    """sample_inputs/ without its recording (and without its manifest if `manifest` is False), for tests that run
    the sample set again and again and are not about recordings."""
    ignored = [RECORDINGS] + ([] if manifest else ["manifest.jsonl"])
    shutil.copytree(SAMPLE_INPUTS, destination, ignore=shutil.ignore_patterns(*ignored))
    return destination


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    # The checkout's pipeline/, whatever the working directory: never a copy installed in the environment earlier.
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 180,
            in_process: bool = True) -> CliResult:
    """`audiosum ARGS` with ENV as its whole environment.

    In this process through click's CliRunner by default (no interpreter start per run); `in_process=False` starts
    a real process, for what only a process shows (signals, the lock held by another process, exit by the OS).
    """
    environment = env or child_env()
    if not in_process:
        completed = subprocess.run([sys.executable, "-m", "pipeline", *args], env=environment,
                                   capture_output=True, text=True, timeout=timeout_s)
        return CliResult(completed.returncode, completed.stdout, completed.stderr)
    from click.testing import CliRunner

    from pipeline.cli import cli

    # The run sees exactly ENV: variables the test environment has but ENV lacks are unset for the call.
    unset: dict[str, str | None] = {name: None for name in os.environ if name not in environment}
    result = CliRunner().invoke(cli, list(args), env={**unset, **environment}, prog_name="audiosum",
                                catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return CliResult(result.exit_code, result.stdout, stderr)


def one_document(tmp_path: Path) -> Path:
    """A folder `in/` with one short document, ferry.txt (three sentences, a time and a price to summarise)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ferry.txt").write_text("The ferry to the island runs twice a day this winter. Tickets cost four "
                                      "pounds. The first boat leaves at eight in the morning.\n")
    return folder


def no_partial_files(out: Path) -> None:
    """No temp file; every WAV whole (it parses and has frames) and named by its own sidecar."""
    assert not list(out.glob(".audiosum-tmp-*"))
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".part"))]
    for path in out.glob("*.wav"):
        with wave.open(str(path), "rb") as reader:
            assert reader.getnframes() > 0, path.name
            assert len(reader.readframes(reader.getnframes())) == reader.getnframes() * reader.getsampwidth()
        assert json.loads(path.with_suffix(".json").read_text())["audio_file"] == path.name
