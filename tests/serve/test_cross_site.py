"""A web page on another site cannot reach `audiosum serve` through the visitor's browser (finding 10 of the hostile
review): a request whose Origin is not the server's own is a 403 on every method but GET and HEAD, and multipart (what
a cross-site form can send to the upload route) is taken only when the server has a key.

Real servers on loopback; the browser's requests are played by httpx with the headers a browser adds.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from peers import SERVER_KEY, RunningServer, start_server, stop_server

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Otters hold hands while they sleep."}]}
BATCH = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
FORM = {"files": {"file": ("in.jsonl", b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n')},
        "data": {"purpose": "batch"}}


@pytest.fixture(scope="module")
def keyless() -> Iterator[RunningServer]:
    """The server of the finding: no --api-key, on loopback."""
    running = start_server("--engine", "tone", "--batch-delay", "60", key=None)
    yield running
    stop_server(running)


def _root(server: RunningServer) -> str:
    return server.base_url.removesuffix("/v1")


def _port(server: RunningServer) -> int:
    port = urlsplit(server.base_url).port
    assert port is not None
    return port


def _error(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def _foreign_origins(server: RunningServer) -> list[str]:
    port = _port(server)
    return ["http://evil.example", "null", f"http://evil.example:{port}", f"http://127.0.0.1:{port + 1}",
            f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}.evil.example", f"http://127.0.0.1:{port}/x"]


# Every route that is not GET/HEAD, with a body it would take.
STATEFUL = [
    ("POST", "/v1/chat/completions", {"json": CHAT}),
    ("POST", "/v1/audio/speech", {"json": {"model": "gpt-4o-mini-tts", "input": "Hello.", "voice": "alloy"}}),
    ("POST", "/v1/files", FORM),
    ("DELETE", "/v1/files/file-x", {}),
    ("POST", "/v1/batches", {"json": BATCH}),
    ("POST", "/v1/batches/batch_x/cancel", {}),
    ("POST", "/stats/reset", {}),
    ("POST", "/faults", {"json": {"faults": "500=1"}}),
]


def test_a_cross_site_form_cannot_fill_a_keyless_servers_file_store(keyless: RunningServer) -> None:
    for _ in range(3):  # the finding: three such uploads filled the store
        response = httpx.post(keyless.base_url + "/files", headers={"Origin": "http://evil.example"}, timeout=30,
                              **FORM)
        assert response.status_code == 403 and _error(response)["code"] == "cross_site_request", response.text
    stats = keyless.stats()
    assert (stats["files"]["files"], stats["files"]["bytes"], stats["files"]["requests"]) == (0, 0, 0)


@pytest.mark.parametrize("method, path, body", STATEFUL, ids=[f"{m} {p}" for m, p, _ in STATEFUL])
def test_every_route_that_is_not_get_refuses_a_foreign_origin(keyless: RunningServer, method: str, path: str,
                                                               body: dict) -> None:
    before = keyless.stats()
    for origin in _foreign_origins(keyless):
        response = httpx.request(method, _root(keyless) + path, headers={"Origin": origin}, timeout=30, **body)
        assert response.status_code == 403, (origin, response.text)
        error = _error(response)
        assert (error["type"], error["code"]) == ("invalid_request_error", "cross_site_request")
        assert origin in error["message"]
    after = keyless.stats()  # nothing reached a route: no counter moved, no fault was set
    assert {k: after[k] for k in ("counts", "speech", "files", "batches")} == \
        {k: before[k] for k in ("counts", "speech", "files", "batches")}
    assert httpx.post(keyless.base_url + "/chat/completions", json=CHAT, timeout=30).status_code == 200


def test_the_servers_own_origin_and_its_loopback_aliases_are_answered(keyless: RunningServer) -> None:
    port = _port(keyless)
    for host, origin in [(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"),
                         (f"127.0.0.1:{port}", f"http://localhost:{port}"),
                         (f"127.0.0.1:{port}", f"http://[::1]:{port}"),
                         (f"localhost:{port}", f"http://LOCALHOST:{port}")]:
        response = httpx.post(keyless.base_url + "/chat/completions", json=CHAT, timeout=30,
                              headers={"Host": host, "Origin": origin})
        assert response.status_code == 200, (host, origin, response.text)


def test_gets_are_answered_whatever_the_origin_and_readable_by_no_other_site(keyless: RunningServer) -> None:
    response = httpx.get(keyless.base_url + "/models", headers={"Origin": "http://evil.example"}, timeout=30)
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_a_keyless_server_takes_no_multipart_even_from_its_own_origin(keyless: RunningServer) -> None:
    for headers in ({}, {"Origin": f"http://127.0.0.1:{_port(keyless)}"}):
        response = httpx.post(keyless.base_url + "/files", headers=headers, timeout=30, **FORM)
        assert response.status_code == 403, response.text
        error = _error(response)
        assert error["code"] == "api_key_required" and "--api-key" in error["message"]
    assert keyless.stats()["files"]["files"] == 0


def test_with_a_key_uploads_work_and_a_foreign_origin_is_still_refused(tone_server: RunningServer) -> None:
    auth = {"Authorization": f"Bearer {SERVER_KEY}"}
    uploaded = httpx.post(tone_server.base_url + "/files", headers=auth, timeout=30, **FORM)
    assert uploaded.status_code == 200, uploaded.text
    assert httpx.delete(f"{tone_server.base_url}/files/{uploaded.json()['id']}", headers=auth,
                        timeout=30).status_code == 200
    refused = httpx.post(tone_server.base_url + "/files", headers={**auth, "Origin": "http://evil.example"},
                         timeout=30, **FORM)
    assert refused.status_code == 403 and _error(refused)["code"] == "cross_site_request"
