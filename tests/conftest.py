"""Shared fixtures: a real `audiosum serve` on a free loopback port, and a clean environment.

Servers run as separate processes, exactly as a user would start them; tests talk to them over sockets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INPUTS = REPO / "sample_inputs"
SERVER_KEY = "sk-test-audiosum-0123456789abcdef"
SCRUBBED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "http_proxy", "https_proxy", "all_proxy", "AUDIOSUM_SERVE_API_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell (a real key, a proxy) must not change what the tests see."""
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    # The checkout's pipeline/, whatever the working directory: never a copy installed in the environment earlier.
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@dataclass
class RunningServer:
    base_url: str
    key: str | None
    process: subprocess.Popen[bytes]

    def stats(self) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", headers=headers, timeout=5).json()


def start_server(*args: str, key: str | None = SERVER_KEY, timeout_s: float = 60.0) -> RunningServer:
    port = free_port()
    command = [sys.executable, "-m", "pipeline", "serve", "--port", str(port), *args]
    if key:
        command += ["--api-key", key]
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode(errors='replace') if process.stderr else ''}")
        try:
            httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=1)
            return RunningServer(base_url=base_url, key=key, process=process)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start in time")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@contextlib.contextmanager
def running_server(*args: str, key: str | None = SERVER_KEY) -> Iterator[RunningServer]:
    """A server for one test, stopped however the test ends."""
    server = start_server(*args, key=key)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def tone_server() -> Iterator[RunningServer]:
    server = start_server("--engine", "tone")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def local_server() -> Iterator[RunningServer]:
    server = start_server("--engine", "local", "--workers", "1")
    yield server
    stop_server(server)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 180) -> CliResult:
    completed = subprocess.run([sys.executable, "-m", "pipeline", *args], env=env or child_env(),
                               capture_output=True, text=True, timeout=timeout_s)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def api_env(server: RunningServer, key: str | None = None) -> dict[str, str]:
    return child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=key or server.key or "")
