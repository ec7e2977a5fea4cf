"""`audiosum serve` against hostile clients (issue 11, part 3): huge and half-sent bodies, type confusion, foreign
Host headers, form posts, keyless /stats, feed symlinks, and a saturated worker pool.

Real server processes over loopback only (127.0.0.1); no sleeps through real windows: deadlines are set short.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from peers import SERVER_KEY, RunningServer, free_port, running_server, stop_server
from runs import child_env, until

from pipeline.cli import cli
from pipeline.serve import app as server

AUTH = {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}
TEXT = "Otters hold hands while they sleep. They float on kelp beds. Their fur is the densest of any animal."
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TEXT}]}
WAV_B64 = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAgD4AAAB9AAACABAAZGF0YQAAAAA="


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningServer]:
    with running_server("--engine", "tone", "--max-body-mb", "4", "--body-timeout", "1",
                        "--header-timeout", "1") as started:
        yield started


def _post(server: RunningServer, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.base_url + "/chat/completions", content=content, headers=headers or AUTH, timeout=30)


def _error(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def _peak_rss_kb(process: subprocess.Popen[bytes]) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _megabytes(count: int) -> Iterator[bytes]:
    chunk = b" " * (1 << 20)
    for _ in range(count):
        yield chunk


# -- bodies ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_body_is_refused_without_being_held(guarded: RunningServer, declared: bool) -> None:
    before = _peak_rss_kb(guarded.process)
    headers = {**AUTH, **({"Content-Length": str(100 << 20)} if declared else {})}
    response = httpx.post(guarded.base_url + "/chat/completions", content=_megabytes(100), headers=headers,
                          timeout=60)
    assert response.status_code == 413 and _error(response)["code"] == "request_too_large"
    # The cap is 4 MB: a chunked body is read up to it and no further; a declared one not at all.
    grown_mb = (_peak_rss_kb(guarded.process) - before) / 1024
    assert grown_mb < 4 + 24, grown_mb
    assert httpx.get(guarded.base_url + "/models", headers=AUTH, timeout=10).status_code == 200


def test_a_half_sent_body_is_cut_off_after_the_deadline(guarded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded))) as sock:
        sock.sendall(_head("POST", 1000) + b'{"model": ')
        sock.settimeout(30)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in answer


def test_headers_that_never_finish_are_cut_off(guarded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded))) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.settimeout(30)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in answer


def _port(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1].split("/")[0])


def _head(method: str, length: int) -> bytes:
    return (f"{method} /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SERVER_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _low_fd_server(limit: int, *args: str) -> RunningServer:
    """A tone server whose open-file limit is `limit` (stderr to a file: its accept errors must not fill a pipe)."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="audiosum-low-fd-")) / "serve.log"
    log = log_path.open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--port", str(port), "--engine", "tone", "--api-key",
         SERVER_KEY, *args], env=child_env(), stdout=subprocess.DEVNULL, stderr=log,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    started = RunningServer(base_url=f"http://127.0.0.1:{port}/v1", key=SERVER_KEY, process=process,
                            stderr_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(started.base_url + "/models", headers=AUTH, timeout=1)
            return started
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    log.seek(0)
    raise RuntimeError(f"server did not start: {log.read().decode(errors='replace')}")


@pytest.mark.slow  # load on the server (seconds)
def test_300_half_open_connections_do_not_lock_out_the_next_client() -> None:
    started = _low_fd_server(256, "--body-timeout", "1", "--header-timeout", "1")
    sockets: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", _port(started)), timeout=10)
            sock.sendall(_head("POST", 10_000) + b'{"model": "gpt-4o-mini", "mess')
            sockets.append(sock)
        # More connections than the server has descriptors: the rest wait in the listen backlog, and every held
        # one is cut off at the body deadline, so a new client is answered within a few deadlines. Until then it
        # may be told 503 (the connection limit's answer, which a client retries): whether the first try comes
        # before or after the deadlines is the machine's timing, so the test waits for the 200, not a race.
        deadline = time.monotonic() + 30
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(httpx.get(started.base_url + "/models", headers=AUTH, timeout=30).status_code)
            if statuses[-1] != 503:
                break
            time.sleep(0.2)
        assert statuses[-1] == 200, statuses
        assert set(statuses[:-1]) <= {503}
        assert started.process.poll() is None
    finally:
        for sock in sockets:
            sock.close()
        stop_server(started)


# -- type confusion --------------------------------------------------------------------------------------------

def _with(**changes: object) -> dict:
    return {**REQUEST, **changes}


def _user(content: object) -> dict:
    return _with(messages=[{"role": "user", "content": content}])


def _audio_part(**input_audio: object) -> dict:
    return _user([{"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "wav", **input_audio}}])


CONFUSED = {
    "role-list": (_with(messages=[{"role": ["user"], "content": TEXT}]), "messages[0].role"),
    "role-number": (_with(messages=[{"role": 7, "content": TEXT}]), "messages[0].role"),
    "audio-format-list": (_with(modalities=["text", "audio"], audio={"voice": "alloy", "format": ["wav"]}),
                          "audio.format"),
    "audio-voice-object": (_with(modalities=["text", "audio"], audio={"voice": {"a": 1}, "format": "wav"}),
                           "audio.voice"),
    "input-audio-format-list": (_audio_part(format=["wav"]), "messages[0].content[0].input_audio.format"),
    "input-audio-data-number": (_audio_part(data=12345), "messages[0].content[0].input_audio.data"),
    "messages-string": (_with(messages="hello"), "messages"),
    "message-number": (_with(messages=[5]), "messages[0]"),
    "content-number": (_user(5), "messages[0].content"),
    "text-part-number": (_user([{"type": "text", "text": 5}]), "messages[0].content[0]"),
    "model-list": (_with(model=["gpt-4o-mini"]), "model"),
    "modalities-nested": (_with(modalities=[["text"]]), "modalities"),
    "assistant-audio-string": (_with(messages=[{"role": "user", "content": TEXT},
                                               {"role": "assistant", "audio": "audio_1"},
                                               {"role": "user", "content": "Why?"}]), "messages[1].audio"),
    "assistant-audio-id-list": (_with(messages=[{"role": "user", "content": TEXT},
                                                {"role": "assistant", "audio": {"id": ["x"]}},
                                                {"role": "user", "content": "Why?"}]), "messages[1].audio"),
    "lone-surrogate": (json.dumps(_user("Fine words \ud800 here.")).encode(), "messages[0].content"),
    "max-tokens-string": (_with(max_tokens="10"), "max_tokens"),
    "n-string": (_with(n="2"), "n"),
    "stream-string": (_with(stream="yes"), "stream"),
    "too-many-messages": (_with(messages=[{"role": "user", "content": "Hi."}] * 2049), "messages"),
    "nested-100000": (b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
    "array-body": ([REQUEST], None),
    "container-bomb": (b'{"model": "gpt-4o-mini", "x": [' + b"[]," * 300_000 + b"[]]}", None),
}


@pytest.mark.parametrize("body, param", CONFUSED.values(), ids=CONFUSED.keys())
def test_every_malformed_field_is_a_400_naming_its_param(guarded: RunningServer, body: object,
                                                         param: str | None) -> None:
    response = _post(guarded, body)
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert len(error["message"]) < 600  # a client's value is quoted, not echoed whole


def test_a_non_ascii_bearer_token_is_a_401_not_a_500(guarded: RunningServer) -> None:
    response = httpx.post(guarded.base_url + "/chat/completions", content=json.dumps(REQUEST).encode(),
                          headers={"Authorization": "Bearer sk-é€".encode(), "Content-Type": "application/json"},
                          timeout=30)
    assert response.status_code == 401 and _error(response)["code"] == "invalid_api_key"


@pytest.mark.parametrize("changes, param", [
    ({"stream": True}, "stream"), ({"n": 3}, "n"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -5}, "max_tokens"), ({"max_completion_tokens": 0}, "max_completion_tokens"),
])
def test_unsupported_features_are_refused_not_ignored(guarded: RunningServer, changes: dict, param: str) -> None:
    response = _post(guarded, _with(**changes))
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "unsupported_value" and error["param"] == param


def test_no_hostile_request_reached_a_500(guarded: RunningServer) -> None:
    assert _post(guarded, _with(n=1, stream=False, max_tokens=50)).status_code == 200
    counts = guarded.stats()["counts"]
    assert "error_500" not in counts, counts


# -- who may ask -----------------------------------------------------------------------------------------------

def test_only_loopback_host_names_are_answered(guarded: RunningServer) -> None:
    port = _port(guarded)
    for host in ("evil.example", "192.168.1.5", f"attacker.test:{port}"):
        response = httpx.get(guarded.base_url + "/models", headers={**AUTH, "Host": host}, timeout=10)
        assert response.status_code == 400 and _error(response)["code"] == "invalid_host"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(guarded.base_url + "/models", headers={**AUTH, "Host": host}, timeout=10).status_code == 200


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
                                          None])
def test_posts_must_be_json(guarded: RunningServer, content_type: str | None) -> None:
    headers = {"Authorization": AUTH["Authorization"], **({"Content-Type": content_type} if content_type else {})}
    response = _post(guarded, json.dumps(REQUEST).encode(), headers=headers)
    assert response.status_code == 415 and _error(response)["code"] == "unsupported_media_type"
    charset = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    assert _post(guarded, REQUEST, headers=charset).status_code == 200


def test_stats_are_behind_the_key(guarded: RunningServer) -> None:
    root = guarded.base_url.removesuffix("/v1")
    assert httpx.get(root + "/stats", timeout=10).status_code == 401
    assert httpx.post(root + "/stats/reset", timeout=10).status_code == 401
    assert httpx.post(root + "/stats/reset", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(root + "/stats", headers={"Authorization": AUTH["Authorization"]}, timeout=10).status_code == 200


@pytest.mark.parametrize("args, reaches_serve", [
    (["--host", "0.0.0.0"], False),
    (["--host", "192.168.1.5"], False),
    (["--host", "::"], False),
    (["--host", "0.0.0.0", "--no-auth"], True),
    (["--host", "0.0.0.0", "--api-key", "sk-lan"], True),
    (["--host", "localhost"], True),
    (["--host", "::1"], True),
    (["--feed-only"], False),
    (["--no-auth", "--api-key", "sk-both"], False),
])
def test_a_keyless_api_is_not_bound_beyond_loopback(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                    reaches_serve: bool) -> None:
    bound: list[server.ServerConfig] = []
    monkeypatch.setattr(server, "serve", bound.append)  # nothing is ever bound here: serve() is replaced
    result = CliRunner().invoke(cli, ["serve", "--port", "0", *args])
    assert (result.exit_code, bool(bound)) == ((0, True) if reaches_serve else (2, False)), result.output
    assert SERVER_KEY not in result.output


def test_feed_only_on_a_lan_address_serves_no_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bound: list[server.ServerConfig] = []
    monkeypatch.setattr(server, "serve", bound.append)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--feed", str(tmp_path), "--feed-only",
                                      "--allowed-host", "nas.local"])
    assert result.exit_code == 0, result.output
    assert bound[0].feed_only and "nas.local" in bound[0].allowed_hosts and "0.0.0.0" not in bound[0].allowed_hosts


# -- the feed --------------------------------------------------------------------------------------------------

FEED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:podcast="https://podcastindex.org/namespace/1.0"
     xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>t</title>
<itunes:image href="http://127.0.0.1:8000/feed/podcast-cover.png?v=1a2b"/>
<item><title>a</title><enclosure url="http://127.0.0.1:8000/feed/episode.wav" length="4" type="audio/wav"/>
<podcast:transcript url="http://127.0.0.1:8000/feed/episode.txt" type="text/plain"/>
<podcast:transcript url="http://127.0.0.1:8000/feed/leak.txt" type="text/plain"/>
<podcast:transcript url="http://127.0.0.1:8000/feed/..%2Fsecret.txt" type="text/plain"/></item>
</channel></rss>
"""


def test_feed_serves_only_linked_regular_files_inside_out(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the feed")
    (out / "podcast.xml").write_text(FEED_XML)
    (out / "episode.wav").write_bytes(b"RIFF")
    (out / "episode.txt").write_text("transcript")
    (out / "podcast-cover.png").write_bytes(b"\x89PNG cover")
    (out / "unlinked.wav").write_bytes(b"RIFF")
    (out / "leak.txt").symlink_to(outside / "secret.txt")   # linked from the feed, but a symlink out of OUT
    with running_server("--engine", "tone", "--feed", str(out), "--feed-only", key=None) as started:
        feed = started.base_url.removesuffix("/v1") + "/feed/"
        assert httpx.get(feed + "podcast.xml", timeout=10).status_code == 200
        assert httpx.get(feed + "episode.wav", timeout=10).content == b"RIFF"
        assert httpx.get(feed + "episode.txt", timeout=10).text == "transcript"
        assert httpx.get(feed + "podcast-cover.png?v=1a2b", timeout=10).content == b"\x89PNG cover"  # the art
        # Apps poll the feed: the copy they hold costs a 304 with no body, by ETag or by date; a changed one a 200.
        first = httpx.get(feed + "podcast.xml", timeout=10)
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        for conditional in ({"If-None-Match": etag}, {"If-None-Match": f'W/{etag}, "other"'},
                            {"If-Modified-Since": modified}):
            held = httpx.get(feed + "podcast.xml", headers=conditional, timeout=10)
            assert held.status_code == 304 and held.content == b"" and held.headers["etag"] == etag, conditional
        assert httpx.get(feed + "podcast.xml", headers={"If-None-Match": '"older"'}, timeout=10).status_code == 200
        assert httpx.get(feed + "podcast.xml", headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                         timeout=10).status_code == 200
        for name in ("leak.txt", "unlinked.wav", "..%2Fsecret.txt", "..%2Foutside%2Fsecret.txt", ".audiosum"):
            response = httpx.get(feed + name, timeout=10)
            assert response.status_code == 404 and b"not for the feed" not in response.content, name
        # --feed-only: the API and the counters are not there at all.
        assert httpx.get(started.base_url + "/models", timeout=10).status_code == 404
        assert httpx.get(started.base_url.removesuffix("/v1") + "/stats", timeout=10).status_code == 404


def test_feed_serves_the_file_it_checked_not_what_the_name_points_to_later(tmp_path: Path) -> None:
    from pipeline.serve.feed import FeedFolder

    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the feed")
    (out / "podcast.xml").write_text(FEED_XML)
    (out / "episode.txt").write_text("transcript")
    folder = FeedFolder(out)
    opened = folder.open("episode.txt")
    assert opened is not None
    # The name is swapped for a symlink out of OUT after the checks: what was opened is still what is read.
    (out / "episode.txt").unlink()
    (out / "episode.txt").symlink_to(outside / "secret.txt")
    with opened:
        assert opened.read() == b"transcript"
    assert folder.open("episode.txt") is None
    with running_server("--engine", "tone", "--feed", str(out), "--feed-only", key=None) as started:
        feed = started.base_url.removesuffix("/v1") + "/feed/"
        assert httpx.get(feed + "episode.txt", timeout=10).status_code == 404
        (out / "episode.txt").unlink()
        (out / "episode.txt").write_text("transcript")
        ranged = httpx.get(feed + "episode.txt", headers={"Range": "bytes=2-5"}, timeout=10)
        assert ranged.status_code == 206 and ranged.content == b"ansc"


# -- the event loop stays free ---------------------------------------------------------------------------------

def _heavy_request(index: int) -> dict:
    sentences = " ".join(f"Report {index} item {n} says the harbour crane {n % 37} moved cargo batch {n * 7}."
                         for n in range(1500))
    return {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "wav"},
            "messages": [{"role": "system", "content": "Summarise in about 15 words."},
                         {"role": "user", "content": sentences}]}


def _spoken_requests(server: RunningServer) -> int:
    return server.stats()["wire"].get("modalities=text,audio", 0)


def _pool(server: RunningServer) -> dict:
    return server.stats()["pool"]


@pytest.mark.slow  # load on the server (seconds)
def test_models_answers_while_the_worker_pool_is_saturated(local_server: RunningServer) -> None:
    # One worker admits two jobs (one running, one waiting); the third request is refused at once.
    assert _pool(local_server)["capacity"] == 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        heavy = [pool.submit(_post, local_server, _heavy_request(i)) for i in range(2)]
        until(lambda: _pool(local_server)["jobs"] == 2 or all(f.done() for f in heavy), "two jobs in the pool")
        refused = _post(local_server, _heavy_request(9))
        for _ in range(10):
            assert httpx.get(local_server.base_url + "/models", headers=AUTH, timeout=30).status_code == 200
        # The event that matters: all ten answered while the heavy jobs still held the pool (no clock decides it;
        # the < 100 ms figure is tests/bench/bench_serve_hostile.py's).
        busy_while_polled = sum(not f.done() for f in heavy)
        assert all(f.result().status_code == 200 for f in heavy)
    assert busy_while_polled > 0
    assert refused.status_code == 503 and _error(refused)["code"] == "server_overloaded"
    assert int(refused.headers["retry-after"]) >= 1


def test_a_waiting_job_whose_client_left_is_dropped(local_server: RunningServer) -> None:
    before = _pool(local_server)
    body = json.dumps(_heavy_request(5)).encode()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(_post, local_server, _heavy_request(4))
        until(lambda: _pool(local_server)["jobs"] >= 1, "a job in the pool")
        with socket.create_connection(("127.0.0.1", _port(local_server))) as sock:
            sock.sendall(_head("POST", len(body)) + body)
            until(lambda: _pool(local_server)["jobs"] == 2, "two jobs in the pool")
        # The client has gone: its job, still waiting behind the running one, is dropped and never run.
        until(lambda: _pool(local_server)["dropped"] == before["dropped"] + 1, "the waiting job dropped")
        assert running.result().status_code == 200
    until(lambda: _pool(local_server)["jobs"] == 0, "an empty pool")
    assert local_server.stats()["counts"]["client_disconnected"] >= 1


# -- what one request may cost -------------------------------------------------------------------------------

FLOAT_BOMB = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}], "x": [' + \
    b",".join([b"1.5"] * 900_000) + b"]}"


@pytest.mark.parametrize("body", [
    FLOAT_BOMB,
    b'{"model": "gpt-4o-mini", "x": [' + b",".join([b'"ab"'] * 300_000) + b"]}",
    b'{"model": "gpt-4o-mini", "x": {' + b",".join(b'"k%d": 0' % i for i in range(150_000)) + b"}}",
], ids=["floats", "strings", "keys"])
def test_a_body_of_millions_of_small_values_is_refused_before_parsing(guarded: RunningServer, body: bytes) -> None:
    response = _post(guarded, body)
    assert response.status_code == 400 and _error(response)["code"] == "invalid_value", response.text


@pytest.mark.slow  # load on the server (seconds)
def test_prose_full_of_commas_and_quotes_is_not_taken_for_a_token_bomb(guarded: RunningServer) -> None:
    text = 'He said, "yes: [no]," then {left}, and so on. ' * 40_000   # 1.8 MB, ~440,000 commas, quotes, colons
    response = _post(guarded, _user(text))
    assert response.status_code == 200, response.text


def test_a_request_text_over_5_mb_is_refused_naming_its_param() -> None:
    with running_server("--engine", "tone", "--max-body-mb", "16") as started:
        one = _post(started, _user("word " * (1_100_000)))
        assert one.status_code == 400
        error = _error(one)
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "messages[0].content",
                                                                  "string_above_max_length")
        split = _with(messages=[{"role": "system", "content": "x " * 1_500_000},
                                {"role": "user", "content": "y " * 1_500_000}])
        error = _error(_post(started, split))
        assert error["param"] == "messages[1].content"
        assert "error_500" not in started.stats()["counts"]


@pytest.mark.slow  # load on the server (seconds)
def test_bodies_in_flight_are_bounded_across_requests() -> None:
    # Cap 1 MB a body, so 2 MB in flight at once: two half-sent 900 KB bodies hold 1.8 MB, and a third is a 503.
    with running_server("--engine", "tone", "--max-body-mb", "1", "--body-timeout", "60") as started:
        port = _port(started)
        held = []
        try:
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(_head("POST", 1_000_000) + b" " * 900_000)
                held.append(sock)
            deadline = time.monotonic() + 60
            while True:
                response = _post(started, b" " * 400_000)
                if response.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the held bodies are still arriving at the server
            assert response.status_code == 503, response.text
            assert _error(response)["code"] == "server_overloaded" and int(response.headers["retry-after"]) >= 1
        finally:
            for sock in held:
                sock.close()
        # Once they are gone, the budget is free again.
        until(lambda: _post(started, REQUEST).status_code == 200, "a 200 for the next request")
        assert httpx.get(started.base_url + "/models", headers=AUTH, timeout=10).status_code == 200


# -- no WebSocket ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "evil.example"])
def test_a_websocket_handshake_is_never_accepted(guarded: RunningServer, host: str) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded))) as sock:
        sock.sendall((f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {SERVER_KEY}\r\n\r\n").encode())
        sock.settimeout(30)
        status = sock.recv(65536).split(b"\r\n", 1)[0]
    assert b" 101 " not in status
    if host != "127.0.0.1":
        assert b" 400 " in status


def test_the_guard_refuses_websocket_scopes() -> None:
    import asyncio

    from pipeline.serve.guard import GuardLimits, RequestGuard

    reached: list[dict] = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        reached.append(scope)

    sent: list[dict] = []

    async def send(message):  # noqa: ANN001, ANN202
        sent.append(message)

    async def receive():  # noqa: ANN202
        return {"type": "websocket.connect"}

    guard = RequestGuard(app, GuardLimits(), hosts=["127.0.0.1"])
    scope = {"type": "websocket", "path": "/", "headers": [(b"host", b"evil.example")], "query_string": b""}
    asyncio.run(guard(scope, receive, send))
    assert not reached and sent[0]["type"] == "websocket.close"
