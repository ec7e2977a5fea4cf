"""Shared fixtures: a real `audiosum serve` on a free loopback port (tests/peers.py), a clean environment, and the
sample inputs; plus the hooks that show a failing test the logs of the servers it used.

Fixtures and hooks only: the helpers tests import are in tests/runs.py (running audiosum) and tests/peers.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Until tests/outputs and tests/audio import them from runs and peers (moved this session): not conftest's own.
from peers import SERVER_LOGS, STARTED, RunningServer, api_env, running_server, start_server, stop_server  # noqa: E402,F401,I001
from runs import SAMPLE_INPUTS, SCRUBBED, child_env, copy_text_samples, run_cli  # noqa: E402,F401


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell (a real key, a proxy) must not change what the tests see."""
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def text_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention copy of sample_inputs/ without its recording, shared by the session."""
    return copy_text_samples(tmp_path_factory.mktemp("samples") / "sample_inputs")


@pytest.fixture(autouse=True)
def _servers_started_by_this_test(request: pytest.FixtureRequest) -> None:
    request.node.stash[_FIRST_SERVER] = len(STARTED)


_FIRST_SERVER = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SERVER_LOGS, ignore_errors=True)  # the servers' logs were only for failing tests' reports


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, the stderr of every server this test started or could have talked to (still running)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    first = item.stash.get(_FIRST_SERVER, len(STARTED))
    for index, server in enumerate(STARTED):
        if index >= first or server.process.poll() is None:
            report.sections.append((f"audiosum serve {server.base_url} stderr", server.stderr_tail()))


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
