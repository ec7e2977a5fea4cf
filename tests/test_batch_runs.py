"""--batch across runs against `audiosum serve` (its /v1/files and /v1/batches, completing after --batch-delay): submit,
poll while in progress, collect and speak; a line failing inside the batch; a run killed between upload and create,
or between create and recording it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, api_env, start_server, stop_server
from runs import child_env, run_cli, until

BATCH_DELAY_S = 1.5
HANG_S = 60


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RunningServer]:
    server = start_server("--engine", "tone", "--batch-delay", str(BATCH_DELAY_S), "--seed", "3", record=True)
    yield server
    stop_server(server)


class BatchServer:
    """The module's server, seen from one test: only the batches, uploads and requests made since it began."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.key = server.key
        server.set_faults("")
        self._batches = {b["id"] for b in _api(server, "GET", "/batches?limit=100")["data"]}
        self._requests = len(server.recorded())

    def batches(self) -> list[dict]:  # type: ignore[type-arg]
        return [b for b in _api(self.server, "GET", "/batches?limit=100")["data"] if b["id"] not in self._batches]

    def recorded(self) -> list[dict]:  # type: ignore[type-arg]
        return self.server.recorded()[self._requests:]

    def set_faults(self, spec: str) -> None:
        self.server.set_faults(spec)


@pytest.fixture()
def batch_server(shared_server: RunningServer) -> BatchServer:
    return BatchServer(shared_server)


def _documents(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for number in range(count):
        (folder / f"doc{number}.txt").write_text(
            f"Notice {number}. The ferry to the island runs twice a day this winter. Tickets cost four pounds. "
            "The first boat leaves at eight in the morning.\n")
    return folder


def _api(server: RunningServer, method: str, path: str) -> dict:  # type: ignore[type-arg]
    response = httpx.request(method, server.base_url + path, headers={"Authorization": f"Bearer {server.key}"},
                             timeout=10)
    response.raise_for_status()
    return response.json()


def _until_batches_end(server: BatchServer) -> None:
    until(lambda: all(b["status"] in ("completed", "failed", "expired", "cancelled") for b in server.batches()),
          "the server's batches ending", deadline_s=HANG_S, every_s=0.05)


def _uploads(server: BatchServer) -> int:
    return sum(1 for r in server.recorded() if r["method"] == "POST" and r["path"] == "/v1/files")


def _run(out: Path, folder: Path, server: BatchServer, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    result = run_cli("run", str(folder), "-o", str(out), "--batch", *extra, env=api_env(server.server))
    report = json.loads((out / "report.json").read_text())
    return result.exit_code, report, result.stderr


def _status(out: Path) -> str:
    result = run_cli("status", str(out), env=child_env())
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_three_runs_submit_wait_then_collect_and_speak(batch_server: BatchServer, tmp_path: Path) -> None:
    folder, out = _documents(tmp_path, 3), tmp_path / "out"
    # Run 1 submits: nothing spoken, every document waiting, exit 0, one upload and one batch.
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0, stderr
    assert report["status"] == "waiting" and report["totals"]["waiting"] == 3 and report["totals"]["done"] == 0
    assert {d["reason"] for d in report["documents"]} == {"queued for a new batch"}
    assert not list(out.glob("*.wav"))
    screen = _status(out)
    assert "batches pending: 1" in screen and "(3 documents)" in screen
    batch_id = batch_server.batches()[0]["id"]
    assert batch_id in screen
    # Run 2, while the batch is still in progress: nothing sent again (never twice while a batch holds it).
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0 and report["status"] == "waiting", stderr
    assert {d["reason"] for d in report["documents"]} == {f"waiting for batch {batch_id}"}
    assert _uploads(batch_server) == 1 and len(batch_server.batches()) == 1
    assert "in_progress" in _status(out) or "validating" in _status(out)
    # Run 3, after the batch completed: the written summaries are spoken and saved like any document.
    _until_batches_end(batch_server)
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0 and report["status"] == "finished" and report["totals"]["done"] == 3, stderr
    assert "batches pending" not in _status(out)
    chats = [r for r in batch_server.recorded() if r["path"] == "/v1/chat/completions"]
    assert chats == []  # the text step went through the batch only
    speeches = [json.loads(r["body"]) if isinstance(r["body"], str) else r["body"] for r in batch_server.recorded()
                if r["path"] == "/v1/audio/speech"]
    for number in range(3):
        sidecar = json.loads((out / f"doc{number}.json").read_text())
        text_step = next(step for step in sidecar["steps"] if step["step"] == "text")
        assert text_step["endpoint"] == f"/batches/{batch_id}" and text_step["usage"]["total_tokens"] > 0
        assert sidecar["transcript"] in {s["input"] for s in speeches}
        assert (out / f"doc{number}.wav").stat().st_size > 44
    # Run 4: unchanged, nothing sent, nothing batched.
    code, report, _ = _run(out, folder, batch_server)
    assert code == 0 and report["totals"]["skipped"] == 3 and _uploads(batch_server) == 1


@pytest.mark.slow  # two batches' worth of waiting, each fallback
@pytest.mark.parametrize("fallback", ["next-batch", "sync"])
def test_a_line_failing_inside_the_batch_goes_to_the_next_batch_or_is_sent_now(
        batch_server: BatchServer, tmp_path: Path, fallback: str) -> None:
    folder, out = _documents(tmp_path, 6), tmp_path / "out"
    batch_server.set_faults("500=0.5")  # drawn per line as the server works through the batch
    code, _, stderr = _run(out, folder, batch_server, "--batch-fallback", fallback)
    assert code == 0, stderr
    _until_batches_end(batch_server)
    batch = batch_server.batches()[0]
    failed = batch["request_counts"]["failed"]
    assert 0 < failed < 6, batch["request_counts"]
    batch_server.set_faults("")
    code, report, stderr = _run(out, folder, batch_server, "--batch-fallback", fallback)
    assert code == 0, stderr
    assert report["totals"]["done"] == 6 - failed + (failed if fallback == "sync" else 0)
    chats = [r for r in batch_server.recorded() if r["path"] == "/v1/chat/completions"]
    if fallback == "sync":
        assert report["status"] == "finished" and len(chats) == failed  # the failed lines, sent synchronously
    else:
        assert report["status"] == "waiting" and report["totals"]["waiting"] == failed and not chats
        assert len(batch_server.batches()) == 2  # a second batch holds the failed lines
        screen = _status(out)
        assert "batches pending: 1" in screen and f"({failed} documents)" in screen


class HoldingRelay(LoopbackSite):
    """Relays to the server, but holds POST /v1/batches for ever: before sending it on (`before`), or after the
    server created the batch and before the client hears of it (`after`)."""

    def __init__(self, upstream: BatchServer, hold: str) -> None:
        self.upstream = upstream.server.base_url.removesuffix("/v1")
        self.hold = hold
        self.held = threading.Event()
        self.closing = threading.Event()
        super().__init__(self._relay)

    def _relay(self, request: Request) -> Reply | None:
        holding = request.method == "POST" and request.path == "/v1/batches"
        if holding and self.hold == "before":
            return self._hold()
        headers = {name: request.headers[name] for name in ("authorization", "content-type") if request.headers[name]}
        answer = httpx.request(request.method, self.upstream + request.target, content=request.body,
                               headers=headers, timeout=HANG_S)
        if holding:
            return self._hold()
        return Reply(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))

    def _hold(self) -> None:
        self.held.set()
        self.closing.wait(HANG_S)
        return None

    def close(self) -> None:
        self.closing.set()
        super().close()


@pytest.mark.slow  # a real process killed, then two runs
@pytest.mark.parametrize("hold", ["before", "after"])
def test_a_run_killed_between_upload_and_create_leaves_nothing_the_next_run_does_not_find(
        batch_server: BatchServer, tmp_path: Path, hold: str) -> None:
    folder, out = _documents(tmp_path, 2), tmp_path / "out"
    with HoldingRelay(batch_server, hold) as relay:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(folder), "-o", str(out), "--batch"],
                                   env=child_env(OPENAI_BASE_URL=relay.url("/v1"), OPENAI_API_KEY=batch_server.key),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert relay.held.wait(HANG_S), "the run never asked to create its batch"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(HANG_S)
        finally:
            if process.poll() is None:
                process.kill()
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        rows = db.execute("SELECT status, file_id, batch_id FROM batches").fetchall()
    assert len(rows) == 1 and rows[0][0] == "uploaded" and rows[0][1] and rows[0][2] is None  # the file id is known
    created_before = len(batch_server.batches())
    assert created_before == (1 if hold == "after" else 0)
    # The next run finds the file: it creates the batch from it, or finds the one the killed run created.
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0 and report["status"] == "waiting", stderr
    batches = batch_server.batches()
    assert len(batches) == 1 and batches[0]["input_file_id"] == rows[0][1]
    assert _uploads(batch_server) == 1  # not uploaded again
    assert not list((out / ".audiosum").glob(".batch-*"))  # no spool left behind
    _until_batches_end(batch_server)
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0 and report["totals"]["done"] == 2, stderr


def test_a_cancelled_batch_is_reported_and_its_documents_go_into_the_next_batch(batch_server: BatchServer,
                                                                                tmp_path: Path) -> None:
    folder, out = _documents(tmp_path, 2), tmp_path / "out"
    code, _, stderr = _run(out, folder, batch_server)
    assert code == 0, stderr
    (batch,) = batch_server.batches()
    _api(batch_server.server, "POST", f"/batches/{batch['id']}/cancel")
    _until_batches_end(batch_server)
    assert batch_server.batches()[0]["status"] == "cancelled"
    code, report, stderr = _run(out, folder, batch_server)
    assert code == 0 and f"batch {batch['id']} was cancelled" in stderr, stderr
    assert any(w["kind"] == "batch_cancelled" for w in report["warnings"])
    assert report["status"] == "waiting" and report["totals"]["waiting"] == 2
    assert len(batch_server.batches()) == 2  # the two documents were submitted again, in a new batch
