"""`audiosum serve --rpm/--tpm/--faults` behaves like the real service under load and failure.

Bucket arithmetic runs on a fake clock; everything else is a real server over loopback, seen through httpx.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from peers import SERVER_KEY, RunningServer, start_server, stop_server
from runs import until

from pipeline.cli import cli
from pipeline.serve.faults import FaultPlan, parse_faults, parse_seconds_range
from pipeline.serve.limits import ServerRateLimits, TokenBucket, format_duration, retry_after_headers

REQUEST = {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"],
           "audio": {"voice": "alloy", "format": "wav"},
           "messages": [{"role": "user", "content": "Otters hold hands while they sleep. They float on kelp."}]}
RATE_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
MIX = "500=0.15,503=0.1,429=0.15,reset=0.1,badjson=0.1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- bucket arithmetic (no sleeping) ----------------------------------------------------------------------------

def test_request_bucket_bursts_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = ServerRateLimits(rpm=120, burst_s=1.0, monotonic=clock)   # 2 a second, burst 2
    assert limiter.admit(10).admitted and limiter.admit(10).admitted
    refused = limiter.admit(10)
    assert not refused.admitted and refused.limited_by == "requests" and refused.wait_s == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.admit(10).wait_s == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.admit(10).admitted
    # Steady state: one request every 1/rate seconds, so N requests take N / rate.
    admitted = 0
    for _ in range(100):
        clock.now += 0.5
        admitted += limiter.admit(10).admitted
    assert admitted == 100
    # Idle time refills no further than the burst.
    clock.now += 3600
    assert sum(limiter.admit(1).admitted for _ in range(5)) == 2


def test_burst_capacity_is_at_least_one_request() -> None:
    clock = FakeClock()
    limiter = ServerRateLimits(rpm=6, burst_s=1.0, monotonic=clock)       # 0.1 a second: capacity would be 0.1
    assert limiter.admit(1).admitted
    assert limiter.admit(1).wait_s == pytest.approx(10.0)


def test_token_bucket_charges_prompt_up_front_and_completion_as_debt() -> None:
    clock = FakeClock()
    limiter = ServerRateLimits(tpm=600, burst_s=1.0, monotonic=clock)     # 10 tokens a second, capacity 10
    assert limiter.admit(25).admitted          # bigger than the burst: fits when full, leaves a debt of 15
    limiter.charge(5)                          # the completion: debt 20
    refused = limiter.admit(5)
    assert not refused.admitted and refused.limited_by == "tokens" and refused.wait_s == pytest.approx(2.5)
    assert limiter.headers()["x-ratelimit-remaining-tokens"] == "0"
    assert limiter.headers()["x-ratelimit-reset-tokens"] == "3s"
    clock.now += 2.5
    assert limiter.admit(5).admitted
    too_large = limiter.admit(601)
    assert not too_large.admitted and too_large.too_large and too_large.limited_by == "tokens"


def test_both_buckets_must_fit_and_a_refusal_charges_neither() -> None:
    clock = FakeClock()
    limiter = ServerRateLimits(rpm=60, tpm=60, burst_s=10.0, monotonic=clock)   # 10 requests, 10 tokens
    assert limiter.admit(10).admitted
    assert limiter.admit(1).limited_by == "tokens"
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "9"
    clock.now += 1
    assert limiter.admit(1).admitted
    assert limiter.headers() == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "60", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "10s",
    }


def test_bucket_level_never_exceeds_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=3.0, monotonic=clock)
    clock.now += 100
    assert bucket.remaining() == 3 and bucket.until_full() == 0.0


@pytest.mark.parametrize(("seconds", "text"), [
    (1.0, "1s"), (0.012, "12ms"), (90.5, "1m30.5s"), (360.0, "6m0s"), (0.0, "0s"), (1.2, "1.2s"),
    (3723.0, "1h2m3s"), (0.0004, "1ms"), (59.999, "59.999s"),
])
def test_reset_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_retry_after_rounds_up() -> None:
    assert retry_after_headers(1.2) == {"retry-after": "2", "retry-after-ms": "1200"}
    assert retry_after_headers(0.0001) == {"retry-after": "1", "retry-after-ms": "1"}


def test_fault_specs_are_parsed_and_checked() -> None:
    assert parse_faults("500=0.1, reset=0.05") == (("500", 0.1), ("reset", 0.05))
    assert parse_faults("") == ()
    for bad in ("500=0.7,reset=0.5", "teapot=0.1", "500", "500=x", "500=0.1,500=0.1", "500=-0.1"):
        with pytest.raises(ValueError):
            parse_faults(bad)
    assert parse_seconds_range("0.1-0.3") == (0.1, 0.3) and parse_seconds_range("2") == (2.0, 2.0)
    with pytest.raises(ValueError):
        parse_seconds_range("0.3-0.1")


def test_fault_draws_follow_the_seed_and_the_probabilities() -> None:
    spec = parse_faults(MIX)
    first, again = FaultPlan(spec, seed=7), FaultPlan(spec, seed=7)
    draws = [first.draw() for _ in range(2000)]
    assert draws == [again.draw() for _ in range(2000)]
    assert draws.count(None) / len(draws) == pytest.approx(0.4, abs=0.05)
    assert draws.count("500") / len(draws) == pytest.approx(0.15, abs=0.04)
    always = FaultPlan((("503", 1.0),), seed=1)
    assert {always.draw() for _ in range(100)} == {"503"}


@pytest.mark.parametrize("args", [["--faults", "500=0.7,reset=0.5"], ["--faults", "teapot=1"],
                                  ["--latency", "slow"], ["--burst", "0"]])
def test_bad_serve_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2 and "Invalid value" in result.output


# -- real servers -----------------------------------------------------------------------------------------------

# One server plays every injected fault in turn (POST /faults); only the rate limits and the key need their own.
SERVERS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "faults": (("--fault-retry-after", "0.05-0.5"), None),
    "rpm": (("--rpm", "120", "--burst", "1"), None),
    "tpm": (("--tpm", "600", "--burst", "1"), None),
    "keyed": (("--faults", "500=1"), SERVER_KEY),
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RunningServer]]:
    with ThreadPoolExecutor(max_workers=len(SERVERS)) as pool:
        futures = {name: pool.submit(start_server, "--engine", "tone", "--workers", "1", *args, key=key)
                   for name, (args, key) in SERVERS.items()}
        started = {name: future.result() for name, future in futures.items() if future.exception() is None}
    if len(started) < len(SERVERS):
        for server in started.values():
            stop_server(server)
        next(future for future in futures.values() if future.exception() is not None).result()   # raises it
    # free_port() can hand one port to two servers started together: the loser exits on bind, but its
    # start_server may already have been answered by the winner. Start both of such a pair again, one by one.
    for _ in range(3):
        ports = Counter(server.base_url for server in started.values())
        clashes = [name for name, server in started.items()
                   if ports[server.base_url] > 1 or server.process.poll() is not None]
        for name in clashes:
            stop_server(started[name])
            args, key = SERVERS[name]
            started[name] = start_server("--engine", "tone", "--workers", "1", *args, key=key)
    assert len({server.base_url for server in started.values()}) == len(started)
    yield started
    with ThreadPoolExecutor(max_workers=len(started)) as pool:
        list(pool.map(stop_server, started.values()))


def _faulting(servers: dict[str, RunningServer], spec: str, seed: int = 0) -> RunningServer:
    """The shared fault server, now injecting `spec` from `seed`, with its counters zeroed."""
    server = servers["faults"]
    root = server.base_url.removesuffix("/v1")
    assert httpx.post(root + "/faults", json={"faults": spec, "seed": seed}, timeout=5).status_code == 200
    assert httpx.post(root + "/stats/reset", timeout=5).status_code == 200
    return server


def _post(server: RunningServer, timeout: float | httpx.Timeout = 5.0, body: dict | None = None,
          key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.base_url + "/chat/completions", json=body or REQUEST, timeout=timeout, headers=headers)


def _counts(server: RunningServer) -> dict[str, int]:
    counts = server.stats()["counts"]
    kinds = {k: v for k, v in counts.items() if k != "requests"}
    assert counts["requests"] == sum(kinds.values()), counts   # every request has exactly one answer kind
    return counts


@pytest.mark.parametrize(("kind", "status", "code", "error_type", "retry_after"), [
    ("429", 429, "rate_limit_exceeded", "requests", True),
    ("429-no-retry-after", 429, "rate_limit_exceeded", "requests", False),
    ("quota", 429, "insufficient_quota", "insufficient_quota", False),
    ("500", 500, None, "server_error", False),
    ("502", 502, None, "server_error", False),
    ("503", 503, None, "server_error", False),
    ("401", 401, "invalid_api_key", "invalid_request_error", False),
    ("400", 400, None, "invalid_request_error", False),
    ("403", 403, "unsupported_country_region_territory", "request_forbidden", False),
    ("404", 404, "model_not_found", "invalid_request_error", False),
    ("408", 408, "request_timeout", "invalid_request_error", False),
    ("409", 409, "conflict", "invalid_request_error", False),
    ("422", 422, "unprocessable_entity", "invalid_request_error", False),
    ("504", 504, None, "server_error", False),
])
def test_error_faults_answer_with_openai_error_bodies(servers: dict[str, RunningServer], kind: str, status: int,
                                                      code: str | None, error_type: str, retry_after: bool) -> None:
    server = _faulting(servers, f"{kind}=1")
    response = _post(server)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == error_type and error["message"] and error["param"] is None
    assert response.headers["x-request-id"].startswith("req_")
    if retry_after:
        wait_ms = int(response.headers["retry-after-ms"])
        assert 50 <= wait_ms <= 500 and response.headers["retry-after"] == "1"
        assert "Please try again in" in error["message"]
    else:
        assert "retry-after" not in response.headers and "retry-after-ms" not in response.headers
    assert _counts(server)[f"fault_{kind}"] == 1


def test_reset_drops_the_connection_without_an_answer(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "reset=1")
    with pytest.raises(httpx.ReadError):    # ECONNRESET: the socket closed with SO_LINGER 0 sends a TCP RST
        _post(server)
    assert _counts(server)["fault_reset"] == 1


def test_timeout_holds_the_request_without_blocking_the_server(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "timeout=1")
    host, port = server.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    body = json.dumps(REQUEST).encode()
    # A raw socket: the test, not a client timeout, decides when the client gives up.
    with socket.create_connection((host, int(port)), timeout=30) as held:
        held.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        until(lambda: server.stats()["held"] == 1, "the server to hold the request")
        # While the request is held, the server still answers others at once.
        assert httpx.get(server.base_url + "/models", timeout=30).status_code == 200
        held.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.recv(1)                 # and the held one has had no answer, not a byte
    until(lambda: server.stats()["held"] == 0, "the hold to end once the client left")
    counts = _counts(server)
    assert counts["fault_timeout"] == 1 and counts["requests"] == 1   # the held one (/models counts apart)
    assert server.stats()["models"]["ok"] == 1


def test_truncated_body_is_an_incomplete_read(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "truncated=1")
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        _post(server)
    assert _counts(server)["fault_truncated"] == 1


def test_badjson_is_a_200_that_does_not_parse(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "badjson=1")
    response = _post(server)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert _counts(server)["fault_badjson"] == 1


def test_badaudio_is_a_well_formed_answer_with_unusable_audio(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "badaudio=1")
    variants = set()
    for _ in range(6):
        response = _post(server)
        assert response.status_code == 200
        audio = response.json()["choices"][0]["message"]["audio"]
        assert audio["id"].startswith("audio_") and audio["transcript"] and audio["expires_at"] > 0
        try:
            data = base64.b64decode(audio["data"], validate=True)
        except binascii.Error:
            variants.add("not base64")
        else:
            assert data[:4] != b"RIFF"
            variants.add("not a wav")
    assert variants == {"not base64", "not a wav"}      # seed 0 gives both within six answers
    assert _counts(server)["fault_badaudio"] == 6


def test_auth_is_checked_before_faults(servers: dict[str, RunningServer]) -> None:
    server = servers["keyed"]
    assert _post(server, key="sk-wrong").status_code == 401
    assert _post(server, key=SERVER_KEY).status_code == 500
    counts = _counts(server)
    assert counts["error_401"] == 1 and counts["fault_500"] == 1 and counts["requests"] == 2


def test_rpm_limit_gives_a_burst_then_429s_then_recovers(servers: dict[str, RunningServer]) -> None:
    server = servers["rpm"]
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda _: _post(server), range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429, 429]
    for response in responses:
        assert all(name in response.headers for name in RATE_HEADERS)
        assert response.headers["x-ratelimit-limit-requests"] == "120"
        assert "x-ratelimit-limit-tokens" not in response.headers   # --tpm 0: no token limit to report
    limited = [r for r in responses if r.status_code == 429]
    for response in limited:
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert "Please try again in" in error["message"]
        assert 0 < int(response.headers["retry-after-ms"]) <= 500 and response.headers["retry-after"] == "1"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
    # Try again after each wait the server announces, until admitted: how long that takes on a loaded machine
    # decides nothing; the pacing is judged below from the server's own clock.
    wait_ms = max(int(r.headers["retry-after-ms"]) for r in limited)
    while True:
        time.sleep(wait_ms / 1000)
        again = _post(server)
        if again.status_code == 200:
            break
        assert again.status_code == 429
        wait_ms = int(again.headers["retry-after-ms"])
    assert "x-ratelimit-reset-requests" in again.headers
    decisions = sorted(server.stats()["log"], key=lambda entry: entry["limiter_s"])
    kinds = [entry["kind"] for entry in decisions]
    assert kinds[:5] == ["ok", "ok", "rate_limited", "rate_limited", "rate_limited"] and kinds[-1] == "ok", kinds
    assert kinds.count("ok") == 3
    # 2 requests a second, a burst of 2: the third admission is at least half a second after the first, on the
    # server's monotonic clock, and every refusal came before it.
    first, third = decisions[0]["limiter_s"], decisions[-1]["limiter_s"]
    assert third - first >= 0.5 - 1e-6
    counts = _counts(server)
    assert counts["ok"] == 3 and counts["rate_limited"] == len(decisions) - 3 >= 3


def test_tpm_limit_charges_tokens_and_refuses_oversized_requests(servers: dict[str, RunningServer]) -> None:
    server = servers["tpm"]
    first = _post(server)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "600"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"       # prompt and completion left it in debt
    second = _post(server)
    assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"
    assert int(second.headers["retry-after-ms"]) > 1000
    huge = dict(REQUEST, messages=[{"role": "user", "content": "word " * 1000}])
    too_large = _post(server, body=huge)
    assert too_large.status_code == 429 and "retry-after" not in too_large.headers
    assert too_large.json()["error"]["message"].startswith("Request too large")
    counts = _counts(server)
    assert counts["ok"] == 1 and counts["rate_limited"] == 2


def _answer_kind(server: RunningServer) -> str:
    try:
        response = _post(server, timeout=30)
    except httpx.TransportError as exc:
        return type(exc).__name__
    try:
        return f"{response.status_code} {response.json()['choices'][0]['finish_reason']}"
    except json.JSONDecodeError:
        return f"{response.status_code} not json"
    except KeyError:
        return f"{response.status_code} {response.json()['error']['type']}"


@pytest.mark.slow  # two seeded runs
def test_seeded_mix_is_reproducible(servers: dict[str, RunningServer]) -> None:
    sequences, counts = {}, {}
    for name, seed in (("mix-a", 42), ("mix-b", 42), ("mix-c", 43)):
        server = _faulting(servers, MIX, seed)
        sequences[name] = [_answer_kind(server) for _ in range(25)]
        counts[name] = _counts(server)
    assert sequences["mix-a"] == sequences["mix-b"], sequences
    assert sequences["mix-a"] != sequences["mix-c"], sequences
    assert len(set(sequences["mix-a"])) >= 4, sequences          # the mix really mixes
    assert counts["mix-a"]["requests"] == 25, (counts, sequences)
    assert counts["mix-a"]["ok"] == sequences["mix-a"].count("200 stop"), (counts, sequences)
    assert counts["mix-a"].get("fault_reset", 0) == sequences["mix-a"].count("ReadError"), (counts, sequences)


def test_stats_reset_zeroes_the_counters(servers: dict[str, RunningServer]) -> None:
    server = _faulting(servers, "")
    assert _post(server).status_code == 200
    stats_url = server.base_url.removesuffix("/v1") + "/stats"
    before = httpx.post(stats_url + "/reset", timeout=5).json()
    assert before == {"engine": "tone", "counts": {"requests": 1, "ok": 1}, "wire": {"modalities=text,audio": 1}}
    assert server.stats()["counts"] == {"requests": 0, "ok": 0} and server.stats()["wire"] == {}
