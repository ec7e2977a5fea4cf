"""`audiosum serve` under hostile load (issue 11, part 3): peak RSS under a 1 GB body, and /v1/models latency idle
versus while 4 worker-heavy requests run on `--engine local --workers 1`. Prints figures; asserts nothing.

Run: .venv-test/bin/python tests/bench/bench_serve_hostile.py   (loopback only; about a minute)
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
from _common import start_server, stop_server  # noqa: E402

KEY = "sk-bench-hostile"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def megabytes(count: int) -> Iterator[bytes]:
    chunk = b" " * (1 << 20)  # one reused buffer: the 1 GB is never built in this process either
    for _ in range(count):
        yield chunk


def big_body(base_url: str, declared: bool) -> str:
    headers = {**HEADERS, **({"Content-Length": str(1024 << 20)} if declared else {})}
    started = time.perf_counter()
    try:
        response = httpx.post(base_url + "/chat/completions", content=megabytes(1024), headers=headers, timeout=120)
        outcome = str(response.status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return f"{outcome} in {time.perf_counter() - started:.2f} s"


def models_latency_ms(base_url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(headers=HEADERS, timeout=60) as client:
        for _ in range(count):
            started = time.perf_counter()
            client.get(base_url + "/models").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def heavy_request(index: int) -> dict:
    text = " ".join(f"Report {index} item {n} says the harbour crane {n % 37} moved cargo batch {n * 7}."
                    for n in range(3000))
    return {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "wav"},
            "messages": [{"role": "system", "content": "Summarise in about 60 words."},
                         {"role": "user", "content": text}]}


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (f"n={len(ordered)} median {statistics.median(ordered):.1f} ms, p95 "
            f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms, max {ordered[-1]:.1f} ms")


def bench_big_body() -> None:
    server = start_server("--engine", "tone", key=KEY)
    try:
        pid = server.process.pid
        idle = peak_rss_mb(pid)
        declared = big_body(server.base_url, declared=True)
        after_declared = peak_rss_mb(pid)
        chunked = big_body(server.base_url, declared=False)
        after_chunked = peak_rss_mb(pid)
        print(f"serve peak RSS (VmHWM), cap 25 MB: idle {idle:.1f} MB; 1 GB with Content-Length: {declared}, "
              f"{after_declared:.1f} MB; 1 GB chunked: {chunked}, {after_chunked:.1f} MB")
    finally:
        stop_server(server)


def bench_models_latency() -> None:
    server = start_server("--engine", "local", "--workers", "1", key=KEY)
    try:
        print(f"/v1/models idle: {summary(models_latency_ms(server.base_url, 50))}")
        with ThreadPoolExecutor(max_workers=4) as pool, httpx.Client(headers=HEADERS, timeout=600) as client:
            heavy = [pool.submit(client.post, server.base_url + "/chat/completions", json=heavy_request(i))
                     for i in range(4)]
            time.sleep(1.0)  # the four are in: parsed, and queued on the one worker
            loaded = models_latency_ms(server.base_url, 50)
            still_running = sum(not f.done() for f in heavy)
            started = time.perf_counter()
            statuses = [f.result().status_code for f in heavy]
        print(f"/v1/models with 4 heavy requests on 1 worker ({still_running} still running after the probes; "
              f"they finished {time.perf_counter() - started:.1f} s later, {statuses}): {summary(loaded)}")
    finally:
        stop_server(server)


def bench_float_bodies() -> None:
    """Four 24 MB bodies of 6 M floats at once: refused (token cap, or bytes in flight) without freezing the loop."""
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}], "x": [' + \
        b",".join([b"1.5"] * 6_000_000) + b"]}"
    server = start_server("--engine", "tone", key=KEY)
    try:
        pid = server.process.pid
        idle = peak_rss_mb(pid)
        with ThreadPoolExecutor(max_workers=4) as pool, httpx.Client(headers=HEADERS, timeout=120) as client:
            sent = [pool.submit(client.post, server.base_url + "/chat/completions", content=body) for _ in range(4)]
            loaded = []
            while not all(f.done() for f in sent):
                loaded += models_latency_ms(server.base_url, 1)
            statuses = sorted(f.result().status_code for f in sent)
        print(f"four 24 MB float bodies: answers {statuses}; /v1/models meanwhile: {summary(loaded)}; peak RSS "
              f"(VmHWM) idle {idle:.1f} MB, after {peak_rss_mb(pid):.1f} MB")
    finally:
        stop_server(server)


if __name__ == "__main__":
    if sys.argv[1:] == ["floats"]:
        bench_float_bodies()
        sys.exit()
    bench_float_bodies()
    bench_big_body()
    bench_models_latency()
