"""Retries and rate limits on the wire: the client against `audiosum serve --faults/--rpm`.

Every count the client records is checked against what the server says it sent (/stats).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections import Counter
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from loopback import Answer, LoopbackSite, Reply, Request
from peers import RunningServer, running_server
from runs import child_env, run_cli

from pipeline.clock import FakeClock
from pipeline.models import Document, RunSettings
from pipeline.providers.openai import OpenAIProvider

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


# The never-answering fault costs a client timeout (2 s) per injected fault: about 10 s, so it runs with the slow step.
# The default step keeps one fault of each family (a 429, a dropped connection, a broken body); the rest are slow.
@pytest.mark.parametrize("kind", [k if k in ("429", "reset", "badjson") else pytest.param(k, marks=pytest.mark.slow)
                                  for k in sorted(TRANSIENT)])
def test_transient_fault_is_retried_until_done(kind: str, tmp_path: Path) -> None:
    with running_server("--engine", "tone", "--faults", f"{kind}=0.5", "--seed", "11",
                        "--fault-retry-after", "0.01-0.02", key=None) as server:
        out = tmp_path / "out"
        # A short client timeout only where the server never answers: elsewhere a slow answer on a loaded machine
        # would be counted as a timeout the server did not inject.
        timeout = ("--timeout", "2") if kind == "timeout" else ()
        result = _run(server, _corpus(tmp_path / "in", 4), out, "--concurrency", "1", *timeout,
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


@pytest.mark.slow  # 200 documents
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
    """12 requests at concurrency 8 against a bucket of 5 refilling at 5 a second: unpaced, the first wave alone
    would be refused in part. The server's count of refusals is the proof of pacing (no clock in the test)."""
    with running_server("--engine", "tone", "--rpm", "300", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 12), out, "--rpm", "300", "--concurrency", "8")
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
        assert counts.get("rate_limited", 0) == 0 and counts["ok"] == 12 == counts["requests"]


@pytest.mark.parametrize("limit", [pytest.param(("--rpm", "600"), id="rpm", marks=pytest.mark.slow),
                                   pytest.param(("--tpm", "120000"), id="tpm", marks=pytest.mark.slow),
                                   pytest.param(("--rpm", "600", "--tpm", "120000"), id="rpm-and-tpm")])
def test_limits_learned_from_headers_converge(tmp_path: Path, limit: tuple[str, ...]) -> None:
    """The server sets the limits, the client is given none: it learns them from the x-ratelimit-* headers of its
    first answers. Only the first wave (sent before any header was seen) can be refused; every refused request is
    a document's first attempt, and its retry (after the pause the 429 asked for) is not refused again."""
    concurrency = 8
    with running_server("--engine", "tone", *limit, "--latency", "0.02-0.05", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 30), out, "--concurrency", str(concurrency),
                      "--max-attempts", "10")
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
        assert counts["ok"] == 30
        assert counts.get("rate_limited", 0) <= concurrency, counts
        assert counts["requests"] == 30 + counts.get("rate_limited", 0)
        with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
            refused = list(db.execute("SELECT doc_id, number FROM attempts WHERE outcome LIKE 'http_429%'"))
        assert len(refused) == counts.get("rate_limited", 0)
        assert all(number == 1 for _, number in refused), refused


def _hint_once(answer: bytes, retry_after: dict[str, str], wall: float) -> Answer:
    """429 with the given Retry-After headers for the first request, then `answer` (a real server's body).

    "date" sends an HTTP date two seconds after `wall` (the client's injected clock's wall time)."""
    arrivals = itertools.count(1)

    def reply(request: Request) -> Reply:
        if next(arrivals) == 1:
            body = json.dumps({"error": {"message": "slow down", "type": "requests", "param": None,
                                         "code": "rate_limit_exceeded"}}).encode()
            return Reply(429, body, headers={name: formatdate(wall + 2, usegmt=True) if value == "date" else value
                                             for name, value in retry_after.items()})
        return Reply(200, answer)

    return reply


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after-ms": "300", "retry-after": "5"}, 0.3),
    ({"retry-after": "1"}, 1.0),
    ({"retry-after": "date"}, 2.0),
])
def test_retry_after_forms_are_honoured(tone_server: RunningServer, headers: dict[str, str],
                                        expected: float) -> None:
    """The provider, in process, over loopback, with an injected clock: the wait it sleeps is exactly the one the
    server asked for (a real clock could only bound it from below)."""
    answer = httpx.post(f"{tone_server.base_url}/chat/completions",
                        headers={"authorization": f"Bearer {tone_server.key}"},
                        json={"model": "m", "modalities": ["text", "audio"],
                              "audio": {"voice": "alloy", "format": "wav"},
                              "messages": [{"role": "user", "content": "The museum reopens on Friday."}]}).content
    clock = FakeClock()
    with LoopbackSite(_hint_once(answer, headers, wall=clock.wall())) as hint:
        settings = RunSettings(inputs=("d.txt",), out_dir=Path("out"), provider="openai", api_base=hint.url("/v1"),
                               api_key="sk-test", max_attempts=3)
        document = Document(id="d", source="d.txt", text="The museum reopens on Friday after repairs.",
                            sha256="0" * 64)

        async def summarise() -> object:
            provider = OpenAIProvider(settings, clock=clock)
            try:
                return await provider.summarise(document, settings)
            finally:
                await provider.aclose()

        started = clock.monotonic()
        summary = asyncio.run(summarise())
        assert hint.count() == 2
        assert [a.outcome for a in summary.attempts] == ["http_429_rate_limit_exceeded", "ok"]
        assert summary.attempts[0].wait_s == pytest.approx(expected)
        # The retry's sleep, and the pool's pause (already over when the retry comes): nothing else was waited.
        assert clock.monotonic() - started == pytest.approx(expected)
        assert max(clock.slept) == pytest.approx(expected)


def test_json_events_retry_rate_limit_pause_and_run_end(tmp_path: Path) -> None:
    """--log-format json: every stderr line is one event. README names the events (run start/end, each document,
    retries, rate-limit pauses) but not their fields; these are the fields the code emits, reconciled with what the
    server says it sent."""
    with running_server("--engine", "tone", "--faults", "429=0.3,500=0.3", "--seed", "1",
                        "--fault-retry-after", "0.01-0.02", key=None) as server:
        out = tmp_path / "out"
        result = _run(server, _corpus(tmp_path / "in", 4), out, "--concurrency", "1", "--max-attempts", "10",
                      "--log-format", "json")
        assert result.exit_code == 0, result.stderr
        counts = server.stats()["counts"]
    events = [json.loads(line) for line in result.stderr.splitlines()]
    for event in events:
        assert datetime.fromisoformat(event["ts"]).tzinfo is not None
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    ids = {f"d{i:03d}" for i in range(4)}

    retries = [e for e in events if e["event"] == "retry"]
    assert counts.get("fault_429", 0) >= 1 and counts.get("fault_500", 0) >= 1  # the seed gives both kinds
    assert Counter(e["status"] for e in retries) == {429: counts["fault_429"], 500: counts["fault_500"]}
    for event in retries:
        assert set(event) == {"ts", "event", "doc_id", "attempt", "cause", "status", "wait_s"}
        assert event["doc_id"] in ids and isinstance(event["attempt"], int) and event["attempt"] >= 1
        assert event["cause"] == {429: "http_429_rate_limit_exceeded", 500: "http_500"}[event["status"]]
        assert isinstance(event["wait_s"], float) and event["wait_s"] >= 0
    # A 429's wait is the server's retry-after-ms (0.01-0.02 s, rounded up to the ms), and the whole pool pauses
    # for it: its rate_limit_pause comes right after it and says the same.
    for index, event in enumerate(events):
        if event["event"] == "retry" and event["status"] == 429:
            assert 0.01 <= event["wait_s"] <= 0.02
            pause = events[index + 1]
            assert pause == {"ts": pause["ts"], "event": "rate_limit_pause", "seconds": event["wait_s"],
                             "doc_id": event["doc_id"]}
    assert names.count("rate_limit_pause") == counts["fault_429"]

    end = events[-1]
    assert set(end) == {"ts", "event", "run_id", "status", "documents", "done", "degraded", "skipped", "failed", "waiting",
                        "audio_seconds", "tokens_in", "tokens_out", "audio_tokens_in", "audio_tokens_out", "requests",
                        "wall_seconds", "cost_usd", "cost_per_spoken_minute_usd", "retries"}
    assert end["run_id"] == events[0]["run_id"] and end["status"] == "finished"
    assert (end["documents"], end["done"], end["skipped"], end["failed"]) == (4, 4, 0, 0)
    assert end["requests"] == counts["requests"] and end["retries"] == len(retries)
    sidecars = [json.loads((out / f"{doc_id}.json").read_text()) for doc_id in sorted(ids)]
    assert end["tokens_in"] == sum(s["usage"]["prompt_tokens"] for s in sidecars)
    assert end["tokens_out"] == sum(s["usage"]["completion_tokens"] for s in sidecars)
    assert end["audio_tokens_out"] == sum(s["usage"]["completion_tokens_details"]["audio_tokens"] for s in sidecars)
    assert end["audio_tokens_in"] == 0
    assert end["audio_seconds"] == pytest.approx(sum(s["duration_s"] for s in sidecars))
    assert end["wall_seconds"] > 0 and end["cost_usd"] > 0
