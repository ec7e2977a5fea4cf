"""The API key never leaves the Authorization header, even when the server echoes it into every field it answers.

A hostile (or merely careless) OpenAI-compatible server over loopback puts the key it received into the error's
message, code, type and param, the x-request-id header and, on success, the transcript and audio id. After a run,
the key must not appear in any byte under OUT (state database and its WAL included), on stdout or on stderr.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply, Request
from peers import RunningServer
from runs import SAMPLE_INPUTS, child_env, run_cli

from pipeline import runner
from pipeline.audio import pcm16_to_wav
from pipeline.models import RunSettings

# Not shaped like an OpenAI key on purpose: only the exact-secret rule can catch it.
PLAIN_KEY = "hunter2-audiosum-plain-secret-77"
SHAPED_KEY = "sk-proj-echoedKEY0123456789abcdefXYZ"


def _echo_key(request: Request) -> Reply:
    """The first path segment picks the answer (/<status>/v1/chat/completions); the key is echoed everywhere."""
    key = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
    status = int(request.path.strip("/").split("/")[0])
    if status == 200:
        body = {"id": key, "object": "chat.completion", "created": 0, "model": f"model-{key}",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": None, "refusal": None,
                    "audio": {"id": f"audio_{key}", "expires_at": 2_000_000_000,
                              "data": base64.b64encode(pcm16_to_wav(b"\x00\x00" * 2400, 24000)).decode(),
                              "transcript": f"Here is the summary. Your key is {key}."}}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
    else:
        body = {"error": {"message": f"refused key {key}", "type": key, "param": f"messages.{key}", "code": key}}
    return Reply(status, json.dumps(body).encode(), headers={
        "x-request-id": f"req_{key}", "retry-after-ms": "1", "x-ratelimit-limit-requests": "1000"})


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with LoopbackSite(_echo_key) as site:
        yield site.base


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("status", [200, 400, 401, 404, 429, 500])
@pytest.mark.parametrize("key", [PLAIN_KEY, SHAPED_KEY])
def test_an_echoed_key_reaches_no_file_and_no_log(tmp_path: Path, echo_server: str, status: int, key: str) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("The harbour bridge reopens on Monday after two years of repairs.\n")
    (inputs / "b.txt").write_text("The council will vote on the new cycle lanes next week.\n")
    out = tmp_path / "out"
    env = child_env(OPENAI_BASE_URL=f"{echo_server}/{status}/v1", OPENAI_API_KEY=key)
    result = run_cli("run", str(inputs), "-o", str(out), "--retry-backoff", "0.001", "--max-attempts", "2",
                     "--log-format", "json", env=env)
    assert result.exit_code == (0 if status == 200 else 1 if status != 401 else 2), result.stderr
    everything = _all_bytes(out) + result.stdout.encode() + result.stderr.encode()
    assert key.encode() not in everything
    # The run did record what happened, with the key replaced.
    report = json.loads((out / "report.json").read_text())
    if status != 200:
        assert "[redacted]" in json.dumps(report)
    else:
        sidecar = json.loads((out / "a.json").read_text())
        assert "[redacted]" in sidecar["transcript"]


def test_feed_url_credentials_and_tokens_reach_no_file_and_no_log(tmp_path: Path) -> None:
    # A loopback port with nothing listening: the feed fails, and everything that records it is checked.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://reader:pw-hunter2@127.0.0.1:{port}/feed.xml?token=tok-7731"
    out = tmp_path / "out"
    result = run_cli("run", url, "-o", str(out), "--log-format", "json", env=child_env())
    assert result.exit_code == 1, result.stderr
    everything = _all_bytes(out) + result.stdout.encode() + result.stderr.encode()
    assert b"pw-hunter2" not in everything and b"tok-7731" not in everything and b"reader:" not in everything
    start = next(json.loads(line) for line in result.stderr.splitlines() if '"run_start"' in line)
    assert start["inputs"] == [f"http://127.0.0.1:{port}/feed.xml"]


def test_a_key_with_a_trailing_newline_works_and_a_bad_key_is_not_echoed(tone_server: RunningServer,
                                                                         tmp_path: Path) -> None:
    env = child_env(OPENAI_BASE_URL=tone_server.base_url, OPENAI_API_KEY=f"{tone_server.key}\r\n")
    ok = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(tmp_path / "a"), env=env)
    assert ok.exit_code == 0, ok.stderr
    secret = "sk-caf\u00e9-secret"
    bad = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(tmp_path / "b"),
                  env=child_env(OPENAI_BASE_URL=tone_server.base_url, OPENAI_API_KEY=secret))
    assert bad.exit_code == 2 and "OPENAI_API_KEY" in bad.stderr and secret not in bad.stderr


def test_base_url_credentials_never_reach_the_report() -> None:
    settings = RunSettings(inputs=("x",), out_dir=Path("o"), api_base="https://user:pa55@proxy.example:8443/v1?key=abc")
    shown = runner.settings_for_report(settings)["api_base"]
    assert shown == "https://proxy.example:8443/v1"
