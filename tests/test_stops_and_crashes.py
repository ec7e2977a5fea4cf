"""Clean stops on SIGINT/SIGTERM, SIGKILL at random moments, and two runs racing for one folder.

The server answers slowly (--latency) so a run is reliably mid-flight when the signal lands.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningServer, child_env, run_cli, start_server, stop_server

DOCS = 12


@pytest.fixture(scope="module")
def slow_server() -> Iterator[RunningServer]:
    server = start_server("--engine", "tone", "--latency", "0.2-0.4", key=None)
    yield server
    stop_server(server)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(DOCS):
        (folder / f"doc{i:02d}.txt").write_text(
            f"Report {i}. The river authority measured water levels at {i + 3} stations this week. "
            f"Levels were {i % 4} centimetres above the seasonal average. No flood warnings were issued.")
    return folder


def _env(server: RunningServer) -> dict[str, str]:
    return child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")


def _start(corpus: Path, out: Path, server: RunningServer, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(corpus), "-o", str(out),
                             "--concurrency", "2", *extra], env=_env(server), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _interrupt_twice_and_expect_a_quick_clean_stop(process: subprocess.Popen[str], out: Path) -> None:
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert time.monotonic() - started < 3
    assert process.returncode == 130
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"


def _wait_for_first_output(out: Path, process: subprocess.Popen[str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if list(out.glob("*.json")):
            return
        time.sleep(0.02)
    raise AssertionError("the run produced nothing in time")


def _no_partial_files(out: Path) -> None:
    assert not list(out.glob(".audiosum-tmp-*"))
    for wav in out.glob("*.wav"):
        sidecar = json.loads(wav.with_suffix(".json").read_text())
        assert wav.stat().st_size > 44 and sidecar["audio_file"] == wav.name


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_a_rerun_finishes(slow_server: RunningServer, corpus: Path, tmp_path: Path,
                                                   signum: int, code: int) -> None:
    out = tmp_path / "out"
    process = _start(corpus, out, slow_server)
    _wait_for_first_output(out, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    assert "interrupted" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    finished = report["totals"]["done"]
    assert 1 <= finished < DOCS
    _no_partial_files(out)

    rerun = run_cli("run", str(corpus), "-o", str(out), "--concurrency", "4", env=_env(slow_server))
    assert rerun.exit_code == 0, rerun.stderr
    assert f"{DOCS - finished} done, {finished} skipped, 0 failed" in rerun.stdout
    assert len(list(out.glob("*.wav"))) == DOCS


def test_second_sigint_stops_at_once(corpus: Path, tmp_path: Path) -> None:
    server = start_server("--engine", "tone", "--latency", "5", key=None)
    try:
        out = tmp_path / "out"
        process = _start(corpus, out, server, "--grace", "60")
        deadline = time.monotonic() + 20
        while server.stats()["counts"].get("requests", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        _interrupt_twice_and_expect_a_quick_clean_stop(process, out)
        _no_partial_files(out)
    finally:
        stop_server(server)


def test_second_sigint_does_not_wait_for_a_slow_feed_page(tmp_path: Path) -> None:
    """The feed's only article page never answers: the item is being pulled (its page fetched) when the signals
    come, and the second one must not wait for that fetch's 10 s read timeout."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()
    hanging = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/feed.xml":
                body = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title><item>'
                        f'<title>Hangs</title><link>http://127.0.0.1:{self.server.server_port}/hang</link>'
                        f'</item></channel></rss>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                hanging.set()
                release.wait(30)  # answer nothing until the test is over

    web = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    web.daemon_threads = True
    threading.Thread(target=web.serve_forever, daemon=True).start()
    server = start_server("--engine", "tone", key=None)
    try:
        out = tmp_path / "out"
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", f"http://127.0.0.1:{web.server_port}/feed.xml", "-o", str(out),
             "--allow-private-links"],
            env=_env(server), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Signalled only once the run is really waiting on the page (not by a fixed sleep a loaded machine outlasts).
        assert hanging.wait(60), "the run never fetched the article page"
        _interrupt_twice_and_expect_a_quick_clean_stop(process, out)
    finally:
        release.set()
        web.shutdown()
        stop_server(server)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_loses_nothing(slow_server: RunningServer, corpus: Path, tmp_path: Path,
                                                  seed: int) -> None:
    out = tmp_path / "out"
    process = _start(corpus, out, slow_server)
    time.sleep(random.Random(seed).uniform(0.3, 2.0))
    process.kill()
    process.communicate(timeout=10)
    rerun = run_cli("run", str(corpus), "-o", str(out), "--concurrency", "4", env=_env(slow_server))
    assert rerun.exit_code == 0, rerun.stderr
    clean = tmp_path / "clean"
    assert run_cli("run", str(corpus), "-o", str(clean), "--concurrency", "4", env=_env(slow_server)).exit_code == 0
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == sorted(p.name for p in clean.iterdir() if p.is_file())
    _no_partial_files(out)
    status = run_cli("status", str(out)).stdout
    assert " running " not in status  # a killed run is marked crashed by the next one


def test_two_runs_on_one_folder_one_proceeds(slow_server: RunningServer, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _start(corpus, out, slow_server)
    second = _start(corpus, out, slow_server)
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 75], results
    locked = next(err for code, err in results if code == 75)
    assert "another audiosum run holds" in locked and "pid" in locked
