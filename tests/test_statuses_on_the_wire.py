"""Every HTTP status the API can answer, on the wire: `audiosum run` against `audiosum serve --faults <status>=1`.

What the client did is counted by the server (/stats), never taken from the client's own account: a retried status
is sent up to --max-attempts times, a refused one exactly once, and its document fails alone with the status named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import RunningServer, api_env, start_server, stop_server
from runs import run_cli

RETRIED = (408, 409, 429, 500, 502, 503, 504)
REFUSED = (400, 403, 404, 422)            # 401 is refused too, and stops the whole run: its own test below
ATTEMPTS = 3


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One server for the module: each test sets its faults with POST /faults (tiny announced 429 waits)."""
    running = start_server("--engine", "tone", "--workers", "1", "--fault-retry-after", "0.01-0.02")
    yield running
    stop_server(running)


def _corpus(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "items.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Notice {i}. The ferry to the island runs twice "
                                                                    "a day this winter. Tickets cost four pounds."})
                                + "\n" for i in range(count)))
    return manifest


def _run(server: RunningServer, tmp_path: Path, documents: int):
    out = tmp_path / "out"
    result = run_cli("run", str(_corpus(tmp_path / "in", documents)), "-o", str(out), "--concurrency", "1",
                     "--max-attempts", str(ATTEMPTS), "--retry-backoff", "0.01", "--timeout", "30",
                     env=api_env(server))
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return result, report


@pytest.mark.parametrize("status", RETRIED)
def test_a_retried_status_is_sent_until_the_attempts_run_out(server: RunningServer, tmp_path: Path,
                                                             status: int) -> None:
    server.set_faults(f"{status}=1", reset_stats=True)
    result, report = _run(server, tmp_path, documents=1)
    counts = server.stats()["counts"]
    assert counts["requests"] == counts[f"fault_{status}"] == ATTEMPTS, (counts, result.stderr)
    assert result.exit_code == 1, result.stderr
    [document] = report["documents"]
    assert document["status"] == "failed" and document["error_class"] == "TransientError", document
    assert f"HTTP {status}" in document["reason"], document
    assert document["requests"] == ATTEMPTS, document
    assert report["totals"]["retries_by_cause"] == {f"http_{status}" + ("_rate_limit_exceeded" if status == 429
                                                                         else ""): ATTEMPTS - 1}


@pytest.mark.parametrize("status", REFUSED)
def test_a_refused_status_is_sent_once_and_fails_its_document_alone(server: RunningServer, tmp_path: Path,
                                                                    status: int) -> None:
    server.set_faults(f"{status}=1", reset_stats=True)
    result, report = _run(server, tmp_path, documents=2)
    counts = server.stats()["counts"]
    # Two documents, one request each: nothing retried, and the first failure did not stop the second.
    assert counts["requests"] == counts[f"fault_{status}"] == 2, (counts, result.stderr)
    assert result.exit_code == 1, result.stderr
    assert len(report["documents"]) == 2
    for document in report["documents"]:
        assert document["status"] == "failed" and document["error_class"] == "PermanentApiError", document
        assert f"HTTP {status}" in document["reason"], document
        assert document["requests"] == 1, document


def test_a_401_is_sent_once_and_stops_the_run(server: RunningServer, tmp_path: Path) -> None:
    server.set_faults("401=1", reset_stats=True)
    result, _ = _run(server, tmp_path, documents=2)
    counts = server.stats()["counts"]
    assert counts["requests"] == counts["fault_401"] == 1, (counts, result.stderr)
    assert result.exit_code == 2 and "refused the key" in result.stderr, result.stderr
