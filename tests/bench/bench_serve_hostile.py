"""`audiosum serve` under hostile load (issue 11, part 3): peak RSS under a 1 GB body, /v1/models latency idle
versus while 4 worker-heavy requests run on `--engine local --workers 1`, and four 24 MB float bodies at once.

Run: .venv-test/bin/python tests/bench/bench_serve_hostile.py [floats] [--smoke]   (loopback only; about a minute)
The same-run baselines are the server's own idle peak RSS and its idle /v1/models latency.
Goals (README: "a 1 GB upload costs no memory", "/v1/models answers in milliseconds while every worker is busy"):
- 1 GB with and without Content-Length: both 413, and peak RSS grows by <= 2x --max-body-mb (25 MB) over idle;
- /v1/models median with 4 heavy requests on 1 worker <= 10x the idle median (a blocked loop is 1000x), the
  heavy requests still running when the probes end, and answered 200 (or 503 past the pool's queue, never 500);
- four 24 MB float bodies: all refused (400, 413 or 503), and /v1/models median meanwhile <= 50x the idle median
  (the old parser froze the loop ~2 s a body; 13x measured for issue 11).
--smoke: a 100 MB body (still 4x the cap), heavy requests of the full size (3000 sentences in 60 words: smaller
ones finished before the probes on an idle machine), 20 probes; every goal is still checked.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goals, parser, start_server, stop_server  # noqa: E402

KEY = "sk-bench-hostile"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
MAX_BODY_MB = 25  # serve's --max-body-mb default
GOAL_BODY_GROWTH = 2.0  # x MAX_BODY_MB
GOAL_BUSY_LATENCY = 10.0  # x the idle median
GOAL_FLOATS_LATENCY = 50.0  # x the idle median
REFUSED = {400, 413, 503}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def megabytes(count: int) -> Iterator[bytes]:
    chunk = b" " * (1 << 20)  # one reused buffer: the 1 GB is never built in this process either
    for _ in range(count):
        yield chunk


def big_body(base_url: str, declared: bool, megs: int) -> tuple[str, float]:
    """(status or exception name, seconds) of one POST of `megs` MB."""
    headers = {**HEADERS, **({"Content-Length": str(megs << 20)} if declared else {})}
    started = time.perf_counter()
    try:
        response = httpx.post(base_url + "/chat/completions", content=megabytes(megs), headers=headers, timeout=120)
        outcome = str(response.status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return outcome, time.perf_counter() - started


def models_latency_ms(base_url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(headers=HEADERS, timeout=60) as client:
        for _ in range(count):
            started = time.perf_counter()
            client.get(base_url + "/models").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def heavy_request(index: int, sentences: int, words: int) -> dict:
    text = " ".join(f"Report {index} item {n} says the harbour crane {n % 37} moved cargo batch {n * 7}."
                    for n in range(sentences))
    return {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "wav"},
            "messages": [{"role": "system", "content": f"Summarise in about {words} words."},
                         {"role": "user", "content": text}]}


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (f"n={len(ordered)} median {statistics.median(ordered):.1f} ms, p95 "
            f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms, max {ordered[-1]:.1f} ms")


def bench_big_body(goals: Goals) -> None:
    megs = 100 if goals.smoke else 1024
    server = start_server("--engine", "tone", key=KEY)
    try:
        pid = server.process.pid
        idle = peak_rss_mb(pid)
        answers, peaks = [], []
        for declared in (True, False):
            answers.append(big_body(server.base_url, declared, megs))
            peaks.append(peak_rss_mb(pid))
    finally:
        stop_server(server)
    (declared_status, declared_s), (chunked_status, chunked_s) = answers
    print(f"serve peak RSS (VmHWM): idle {idle:.1f} MB; {megs} MB with Content-Length: {declared_status} in "
          f"{declared_s:.2f} s, {peaks[0]:.1f} MB; {megs} MB chunked: {chunked_status} in {chunked_s:.2f} s, "
          f"{peaks[1]:.1f} MB", flush=True)
    goals.true(f"{megs} MB bodies, declared and chunked: both 413", [a for a, _ in answers] == ["413", "413"],
               f"{declared_status}, {chunked_status}")
    goals.check(f"peak RSS growth over idle / --max-body-mb ({MAX_BODY_MB})", (max(peaks) - idle) / MAX_BODY_MB,
                "<=", GOAL_BODY_GROWTH, fmt=".2f")


def bench_models_latency(goals: Goals) -> None:
    # The heavy requests must outlast the probes on a fast machine too: the same size at smoke, fewer probes.
    probes, sentences, words = (20, 3000, 60) if goals.smoke else (50, 3000, 60)
    server = start_server("--engine", "local", "--workers", "1", key=KEY)
    try:
        idle = models_latency_ms(server.base_url, probes)
        print(f"/v1/models idle: {summary(idle)}", flush=True)
        with ThreadPoolExecutor(max_workers=4) as pool, httpx.Client(headers=HEADERS, timeout=600) as client:
            heavy = [pool.submit(client.post, server.base_url + "/chat/completions",
                                 json=heavy_request(i, sentences, words)) for i in range(4)]
            time.sleep(1.0)  # the four are in: parsed, and queued on the one worker
            loaded = models_latency_ms(server.base_url, probes)
            still_running = sum(not f.done() for f in heavy)
            started = time.perf_counter()
            statuses = [f.result().status_code for f in heavy]
        print(f"/v1/models with 4 heavy requests on 1 worker ({still_running} still running after the probes; "
              f"they finished {time.perf_counter() - started:.1f} s later, {statuses}): {summary(loaded)}",
              flush=True)
    finally:
        stop_server(server)
    goals.true("the 4 heavy requests: admitted ones 200, the rest 503 (the pool's queue is full)",
               200 in statuses and set(statuses) <= {200, 503}, str(statuses))
    goals.true("the heavy requests were still running when the probes ended", still_running > 0,
               f"{still_running} of 4")
    goals.check("/v1/models median, 4 heavy requests on 1 worker / idle",
                statistics.median(loaded) / statistics.median(idle), "<=", GOAL_BUSY_LATENCY, fmt=".1f")


def bench_float_bodies(goals: Goals) -> None:
    """Four 24 MB bodies of 6 M floats at once: refused (token cap, or bytes in flight) without freezing the loop."""
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}], "x": [' + \
        b",".join([b"1.5"] * 6_000_000) + b"]}"
    server = start_server("--engine", "tone", key=KEY)
    try:
        pid = server.process.pid
        idle_rss = peak_rss_mb(pid)
        idle = models_latency_ms(server.base_url, 20)
        with ThreadPoolExecutor(max_workers=4) as pool, httpx.Client(headers=HEADERS, timeout=120) as client:
            sent = [pool.submit(client.post, server.base_url + "/chat/completions", content=body) for _ in range(4)]
            loaded: list[float] = []
            while not all(f.done() for f in sent):
                loaded += models_latency_ms(server.base_url, 1)
            statuses = sorted(f.result().status_code for f in sent)
        print(f"four 24 MB float bodies: answers {statuses}; /v1/models idle: {summary(idle)}; meanwhile: "
              f"{summary(loaded)}; peak RSS (VmHWM) idle {idle_rss:.1f} MB, after {peak_rss_mb(pid):.1f} MB",
              flush=True)
    finally:
        stop_server(server)
    goals.true("four 24 MB float bodies: all refused (400, 413 or 503)", set(statuses) <= REFUSED, str(statuses))
    goals.check("/v1/models median while they are refused / idle", statistics.median(loaded) /
                statistics.median(idle), "<=", GOAL_FLOATS_LATENCY, fmt=".1f")


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("part", nargs="?", choices=("floats",), help="only the float bodies")
    args = args_parser.parse_args()
    goals = Goals("bench_serve_hostile", args.smoke)
    bench_float_bodies(goals)
    if args.part != "floats":
        bench_big_body(goals)
        bench_models_latency(goals)
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
