"""Shared pieces for the benchmarks: the --smoke flag, goal checks with the exit code, a manifest writer, and a
child process measured with wait4. Nothing here decides a goal: each bench states its own.

Every bench ends with one line `GOAL ok: ...` or `GOAL MISSED: ...` (tests/bench/run_smoke.py reads it) and exits
1 when a goal is missed. Goals are ratios against a baseline measured in the same run, because the machines are
noisy; a goal that means nothing at the --smoke size is not checked there, and the bench says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# This checkout's pipeline/ and tests/, never a copy of pipeline installed in the environment earlier.
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]
from peers import start_server, stop_server  # noqa: E402,F401
from runs import REPO, child_env  # noqa: E402,F401

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda value, limit: value <= limit,
    ">=": lambda value, limit: value >= limit,
    "==": lambda value, limit: value == limit,
}


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with --smoke: the tiniest size that still runs the bench's whole path."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--smoke", action="store_true",
                        help="the tiniest size that still exercises the whole path (seconds); checks the goals "
                             "that mean something at that size, and that every figure is finite")
    return parser


@dataclass
class Goals:
    """The goals of one bench run: each check prints its line; finish() prints the GOAL line and gives the exit code."""

    bench: str
    smoke: bool = False
    missed: list[str] = field(default_factory=list)
    checked: int = 0

    def check(self, label: str, value: float, op: str, limit: float, unit: str = "", fmt: str = ".3g") -> bool:
        """`label = value (goal op limit)`; a NaN or infinite value misses whatever the goal."""
        ok = math.isfinite(value) and _OPS[op](value, limit)
        self.checked += 1
        shown = f"{value:{fmt}}{unit} (goal {op} {limit:{fmt}}{unit})"
        print(f"  goal {'ok    ' if ok else 'MISSED'} {label} = {shown}", flush=True)
        if not ok:
            self.missed.append(f"{label} = {shown}")
        return ok

    def finite(self, label: str, *values: float) -> bool:
        """For a smoke run where a ratio means nothing: the figures exist and are finite numbers."""
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        self.checked += 1
        print(f"  goal {'ok    ' if ok else 'MISSED'} {label}: figures finite {[round(v, 4) for v in values]}",
              flush=True)
        if not ok:
            self.missed.append(f"{label} not finite: {values}")
        return ok

    def true(self, label: str, ok: bool, detail: str = "") -> bool:
        """A yes/no goal (every document done, every body refused, 0 requests...)."""
        self.checked += 1
        print(f"  goal {'ok    ' if ok else 'MISSED'} {label}{': ' + detail if detail else ''}", flush=True)
        if not ok:
            self.missed.append(label + (f" ({detail})" if detail else ""))
        return ok

    def skipped(self, why: str) -> None:
        """A goal this size cannot judge: said in the output, so a passing smoke is never read as a passing goal."""
        print(f"  goal not checked at this size: {why}", flush=True)

    def finish(self) -> int:
        size = "smoke" if self.smoke else "full"
        if self.missed:
            print(f"GOAL MISSED: {self.bench} ({size}): " + "; ".join(self.missed), flush=True)
            return 1
        print(f"GOAL ok: {self.bench} ({size}), {self.checked} checks", flush=True)
        return 0


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
    stderr_tail: str = ""


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run a child to completion; its own CPU time and peak RSS come from wait4, not from sampling.

    stderr goes to a file (a chatty child never blocks on a full pipe); its tail is kept for a failure message.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace")
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode, stdout, tail)


def audiosum(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]
