"""Shared fixtures: a real `audiosum serve` on a free loopback port, and a clean environment.

Servers run as separate processes, exactly as a user would start them; tests talk to them over sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INPUTS = REPO / "sample_inputs"
SERVER_KEY = "sk-test-audiosum-0123456789abcdef"
RECORDINGS = "voice-notes"  # sample_inputs/' folder of recordings: hearing its mp3 takes seconds on every fresh run
SCRUBBED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "http_proxy", "https_proxy", "all_proxy", "AUDIOSUM_SERVE_API_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell (a real key, a proxy) must not change what the tests see."""
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def copy_text_samples(destination: Path, *, manifest: bool = True) -> Path:
    """sample_inputs/ without its recording (and without its manifest if `manifest` is False), for tests that run
    the sample set again and again and are not about recordings."""
    ignored = [RECORDINGS] + ([] if manifest else ["manifest.jsonl"])
    shutil.copytree(SAMPLE_INPUTS, destination, ignore=shutil.ignore_patterns(*ignored))
    return destination


@pytest.fixture(scope="session")
def text_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention copy of sample_inputs/ without its recording, shared by the session."""
    return copy_text_samples(tmp_path_factory.mktemp("samples") / "sample_inputs")


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
    stderr_path: Path
    record_path: Path | None = None  # `serve --record`: every API request body, one JSON line each

    def recorded(self) -> list[dict]:
        """The requests the server received so far ({"method", "path", "body"}; a JSON body parsed), oldest first."""
        assert self.record_path is not None, "start the server with record=True"
        if not self.record_path.exists():  # written from the first request on
            return []
        requests = [json.loads(line) for line in self.record_path.read_text().splitlines() if line.strip()]
        for request in requests:  # the body as sent; parsed here when it is JSON
            with contextlib.suppress(ValueError):
                request["body"] = json.loads(request["body"])
        return requests

    def stats(self) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", headers=headers, timeout=5).json()

    def set_faults(self, spec: str, *, reset_stats: bool = False) -> None:
        """Replace a running server's injected faults (`POST /faults`); optionally zero its counts and log."""
        root, headers = self.base_url.removesuffix("/v1"), {"Authorization": f"Bearer {self.key}"} if self.key else {}
        assert httpx.post(root + "/faults", json={"faults": spec}, headers=headers, timeout=10).status_code == 200
        if reset_stats:
            assert httpx.post(root + "/stats/reset", headers=headers, timeout=10).status_code == 200

    def stderr_tail(self, limit: int = 8_000) -> str:
        """The end of what the server wrote to stderr (a file, so a chatty server never blocks on a full pipe)."""
        try:
            data = self.stderr_path.read_bytes()
        except OSError as exc:
            return f"(no stderr: {exc})"
        return data[-limit:].decode(errors="replace")


# Every server started in this session, so a failing test's report can show the logs of the servers it used.
_SERVERS: list[RunningServer] = []
_SERVER_LOGS = Path(tempfile.mkdtemp(prefix="audiosum-serve-logs-"))


def start_server(*args: str, key: str | None = SERVER_KEY, timeout_s: float = 60.0,
                 record: bool = False) -> RunningServer:
    port = free_port()
    command = [sys.executable, "-m", "pipeline", "serve", "--port", str(port), *args]
    if key:
        command += ["--api-key", key]
    stderr_path = _SERVER_LOGS / f"serve-{port}-{len(_SERVERS)}.log"
    record_path = _SERVER_LOGS / f"serve-{port}-{len(_SERVERS)}.requests.jsonl" if record else None
    if record_path is not None:
        command += ["--record", str(record_path)]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    server = RunningServer(base_url=f"http://127.0.0.1:{port}/v1", key=key, process=process, stderr_path=stderr_path,
                           record_path=record_path)
    _SERVERS.append(server)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited: " + server.stderr_tail())
        try:
            httpx.get(server.base_url.removesuffix("/v1") + "/stats", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start in time: " + server.stderr_tail())


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(autouse=True)
def _servers_started_by_this_test(request: pytest.FixtureRequest) -> None:
    request.node.stash[_FIRST_SERVER] = len(_SERVERS)


_FIRST_SERVER = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SERVER_LOGS, ignore_errors=True)  # the servers' logs were only for failing tests' reports


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, the stderr of every server this test started or could have talked to (still running)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    first = item.stash.get(_FIRST_SERVER, len(_SERVERS))
    for index, server in enumerate(_SERVERS):
        if index >= first or server.process.poll() is None:
            report.sections.append((f"audiosum serve {server.base_url} stderr", server.stderr_tail()))


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


@pytest.fixture(scope="module")
def recording_server() -> Iterator[RunningServer]:
    """A tone server that records every request body (`serve --record`): the wire is the test's oracle."""
    server = start_server("--engine", "tone", record=True)
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


def api_env(server: RunningServer, key: str | None = None) -> dict[str, str]:
    return child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=key or server.key or "")


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
