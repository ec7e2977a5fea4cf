"""Shared pieces for the benchmarks: a manifest writer and a child process measured with wait4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO, child_env, start_server, stop_server  # noqa: E402,F401


def write_manifest(path: Path, count: int, words: int = 60) -> Path:
    filler = ("The district council reviewed the budget for bridges, ferries and cycle lanes, and agreed to "
              "publish the figures next week. ")
    with path.open("w") as handle:
        for i in range(count):
            text = f"Item {i}. " + filler * max(1, words // 18)
            handle.write(json.dumps({"id": f"doc-{i:06d}", "text": text}) + "\n")
    return path


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    stdout: str


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run a child to completion; its own CPU time and peak RSS come from wait4, not from sampling."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    assert process.stdout is not None
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode, stdout)


def audiosum(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]
