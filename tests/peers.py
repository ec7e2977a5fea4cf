"""`audiosum serve` as the tests' peer: started on a free loopback port as a separate process, exactly as a user
would start it; stopped; its stderr and (with --record) the requests it received, read back.

Helpers only (the fixtures that use them are in tests/conftest.py); every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from runs import child_env

SERVER_KEY = "sk-test-audiosum-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
STARTED: list[RunningServer] = []
SERVER_LOGS = Path(tempfile.mkdtemp(prefix="audiosum-serve-logs-"))


def start_server(*args: str, key: str | None = SERVER_KEY, timeout_s: float = 60.0,
                 record: bool = False) -> RunningServer:
    port = free_port()
    command = [sys.executable, "-m", "pipeline", "serve", "--port", str(port), *args]
    if key:
        command += ["--api-key", key]
    stderr_path = SERVER_LOGS / f"serve-{port}-{len(STARTED)}.log"
    record_path = SERVER_LOGS / f"serve-{port}-{len(STARTED)}.requests.jsonl" if record else None
    if record_path is not None:
        command += ["--record", str(record_path)]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    server = RunningServer(base_url=f"http://127.0.0.1:{port}/v1", key=key, process=process, stderr_path=stderr_path,
                           record_path=record_path)
    STARTED.append(server)
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


@contextlib.contextmanager
def running_server(*args: str, key: str | None = SERVER_KEY) -> Iterator[RunningServer]:
    """A server for one test, stopped however the test ends."""
    server = start_server(*args, key=key)
    try:
        yield server
    finally:
        stop_server(server)


def api_env(server: RunningServer, key: str | None = None) -> dict[str, str]:
    return child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=key or server.key or "")
