"""Retries and rate limits on the wire: the client against `audiosum serve --faults/--rpm`.

Every count the client records is checked against what the server says it sent (/stats).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, child_env, run_cli, running_server

FAST_RETRY = ("--retry-backoff", "0.01")


def _corpus(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "items.jsonl"
    with manifest.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"d{i:03d}", "text": f"Notice {i}. The ferry to the island runs "
                                     f"{i % 5 + 1} times a day this winter. Tickets cost {i % 9 + 2} pounds."}) + "\n")
    return manifest


def _run(server: RunningServer, manifest: Path, out: Path, *extra: str):
    env = child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    return run_cli("run", str(manifest), "-o", str(out), *FAST_RETRY, *extra, env=env)


def _attempt_causes(out: Path) -> Counter[str]:
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        return Counter(outcome for (outcome,) in db.execute("SELECT outcome FROM attempts"))


def _clean_outputs(out: Path) -> None:
    assert not list(out.glob(".audiosum-tmp-*"))
    for wav in out.glob("*.wav"):
        assert wav.read_bytes()[:4] == b"RIFF"
        assert json.loads(wav.with_suffix(".json").read_text())["audio_file"] == wav.name


TRANSIENT = {
    "429": "http_429_rate_limit_exceeded",
    "429-no-retry-after": "http_429_rate_limit_exceeded",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "reset": "connection",
    "timeout": "timeout",
    "badjson": "broken_answer",
    "badaudio": "broken_answer",
    "truncated": "connection",
}


@pytest.mark.parametrize("kind", sorted(TRANSIENT))
def test_transient_fault_is_retried_until_done(kind: str, tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--faults", f"{kind}=0.5", "--seed", "11",
                        "--fault-retry-after", "0.01-0.02", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 4), out, "--concurrency", "1", "--timeout", "1",
                      "--max-attempts", "10")
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
        faults = counts.get(f"fault_{kind}", 0)
        assert faults >= 1
        causes = _attempt_causes(out)
        assert causes[TRANSIENT[kind]] == faults
        assert causes["ok"] == counts["ok"] == 4
        report = json.loads((out / "report.json").read_text())
        assert report["totals"]["retries"] == faults
        assert report["totals"]["retries_by_cause"] == {TRANSIENT[kind]: faults}
        _clean_outputs(out)


def test_quota_is_permanent_and_not_retried(tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--faults", "quota=1", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 3), out)
        assert result.exit_code == 1
        report = json.loads((out / "report.json").read_text())
        assert {d["error_class"] for d in report["documents"]} == {"PermanentApiError"}
        assert all("insufficient_quota" in d["reason"] for d in report["documents"])
        assert server.stats()["counts"]["requests"] == 3
        assert not list(out.glob("*.wav"))


def test_injected_401_stops_the_run(tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--faults", "401=1", key=None) as server:
        result = _run(server, _corpus(tmp_path / "in", 20), tmp_path / "out", "--concurrency", "2")
        assert result.exit_code == 2 and "refused the key" in result.stderr
        assert server.stats()["counts"]["requests"] <= 2


def test_mixed_faults_over_200_documents(tmp_path: Path) -> None:
    spec = ("429=0.03,429-no-retry-after=0.02,500=0.03,502=0.02,503=0.02,reset=0.02,badjson=0.02,"
            "badaudio=0.02,truncated=0.01,quota=0.01")
    with running_server("--engine", "tone", "--faults", spec, "--seed", "3", "--fault-retry-after", "0.01-0.05",
                        key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 200), out, "--concurrency", "16", "--max-attempts", "8")
        report = json.loads((out / "report.json").read_text())
        statuses = Counter(d["status"] for d in report["documents"])
        assert statuses["done"] + statuses["failed"] == 200
        failed = [d for d in report["documents"] if d["status"] == "failed"]
        assert all(d["error_class"] == "PermanentApiError" and "insufficient_quota" in d["reason"] for d in failed)
        assert result.exit_code == (1 if failed else 0)

        counts = server.stats()["counts"]
        causes = _attempt_causes(out)
        assert causes["ok"] == counts["ok"] == statuses["done"]
        assert causes["http_429_rate_limit_exceeded"] == counts.get("fault_429", 0) + counts.get(
            "fault_429-no-retry-after", 0) + counts.get("rate_limited", 0)
        assert causes["http_429_insufficient_quota"] == counts.get("fault_quota", 0) == len(failed)
        for status in ("500", "502", "503"):
            assert causes[f"http_{status}"] == counts.get(f"fault_{status}", 0)
        assert causes["connection"] == counts.get("fault_reset", 0) + counts.get("fault_truncated", 0)
        assert causes["broken_answer"] == counts.get("fault_badjson", 0) + counts.get("fault_badaudio", 0)
        assert sum(causes.values()) == counts["requests"]
        assert report["totals"]["requests"] == counts["requests"]
        _clean_outputs(out)


def test_given_rpm_means_no_429_reaches_the_client(tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--rpm", "1200", "--latency", "0.05-0.2", key=None) as server:
        out = tmp_path / "out"
        started = time.monotonic()
        result = _run(server, _corpus(tmp_path / "in", 40), out, "--rpm", "1200", "--concurrency", "16")
        elapsed = time.monotonic() - started
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
        assert counts.get("rate_limited", 0) == 0 and counts["ok"] == 40
        assert elapsed >= 39 / 20  # 40 requests at 20 a second cannot finish sooner


def test_limits_learned_from_headers_converge(tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--rpm", "1200", "--latency", "0.05-0.2", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 60), out, "--concurrency", "16", "--max-attempts", "10")
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
        assert counts["ok"] == 60
        # Only the first wave (sent before any header was seen) can overrun the burst.
        assert counts.get("rate_limited", 0) <= 16


class _HintServer:
    """A loopback server that answers 429 with a given Retry-After once, then relays a real answer."""

    def __init__(self, answer: bytes, retry_after: dict[str, str]) -> None:
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.times.append(time.monotonic())
                if len(outer.times) == 1:
                    body = json.dumps({"error": {"message": "slow down", "type": "requests", "param": None,
                                                 "code": "rate_limit_exceeded"}}).encode()
                    self.send_response(429)
                    for name, value in retry_after.items():
                        # "date" means an HTTP date 2 s from now, made as the answer goes out; with the
                        # format's whole seconds the client then waits between 1 and 2 s.
                        self.send_header(name, formatdate(time.time() + 2, usegmt=True) if value == "date" else value)
                else:
                    body = answer
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.mark.parametrize("headers, low, high", [
    ({"retry-after-ms": "300", "retry-after": "5"}, 0.3, 1.0),
    ({"retry-after": "1"}, 1.0, 1.8),
    ({"retry-after": "date"}, 0.95, 2.5),
])
def test_retry_after_forms_are_honoured(tone_server: RunningServer, tmp_path: Path, headers: dict[str, str],
                                        low: float, high: float) -> None:
    answer = httpx.post(f"{tone_server.base_url}/chat/completions", headers={"authorization": f"Bearer {tone_server.key}"},
                        json={"model": "m", "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
                              "messages": [{"role": "user", "content": "The museum reopens on Friday."}]}).content
    hint = _HintServer(answer, headers)
    try:
        out = tmp_path / "out"
        env = child_env(OPENAI_BASE_URL=hint.base_url, OPENAI_API_KEY="sk-test")
        result = run_cli("run", str(_corpus(tmp_path / "in", 1)), "-o", str(out), env=env)
        assert result.exit_code == 0, result.stderr
        waited = hint.times[1] - hint.times[0]
        assert low <= waited <= high, waited
    finally:
        hint.close()
