"""A scripted hostile API on loopback, answering the newer paths (--batch, two-step, chat audio) the way an attacker
would: keys hidden in object keys, statuses that are audiosum's own, ids that climb out of their path, JSON nested
200,000 deep, answers without end, audio that claims hours for five words. Each test is one finding of the second
hostile review (issue 23) and fails on the code before its fix."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import LoopbackSite, Reply, Request
from runs import child_env, one_document, run_cli

from pipeline.audio import pcm16_to_wav

KEY = "sk-test-hostileROUNDtwo0123456789"
ESCAPE = "\u001b]0;pwned\u0007"
Json = dict[str, Any]


def _wav(seconds: float, rate: int = 24_000) -> bytes:
    return pcm16_to_wav(b"\x00\x00" * int(seconds * rate), rate)


def chat_answer(transcript: str = "The ferry runs twice a day and costs four pounds.", *, wav: bytes | None = None,
                usage: Json | None = None, content: str | None = None) -> Json:
    message: Json = {"role": "assistant", "content": content, "refusal": None}
    if content is None:
        message["audio"] = {"id": "audio_abc123", "expires_at": 2_000_000_000, "transcript": transcript,
                            "data": base64.b64encode(wav if wav is not None else _wav(2.0)).decode()}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-audio",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message},],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


class HostileApi(LoopbackSite):
    """Chat, speech, files and batches, each answer replaceable by the test (`chat`, `poll`, `created`, `content`)."""

    def __init__(self) -> None:
        self.chat: Callable[[Request], Reply] = self._chat
        self.created: Callable[[Json], Json] = lambda batch: batch  # the answer to POST /batches
        self.poll: Callable[[Json], Json | bytes | Reply] = lambda batch: batch  # the answer to GET /batches/{id}
        self.content: Callable[[list[str]], Reply] = self._answered
        self.custom_ids: list[str] = []
        self.batch: Json | None = None
        super().__init__(self._answer)

    def paths(self, prefix: str = "/") -> list[str]:
        return [r.path for r in self.requests if r.path.startswith(prefix)]

    def uploads(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST" and r.path == "/v1/files")

    def _answer(self, request: Request) -> Reply | None:
        path, method = request.path, request.method
        if path.startswith("/v1/models/"):
            return _json({"id": path.rsplit("/", 1)[1], "object": "model", "created": 0, "owned_by": "x"})
        if path == "/v1/chat/completions":
            return self.chat(request)
        if path == "/v1/audio/speech":
            words = len(json.loads(request.body)["input"].split())
            return Reply(body=b"\x00\x00" * int(words * 0.3 * 24_000), content_type="audio/pcm")
        if path == "/v1/files" and method == "POST":
            self.custom_ids = re.findall(r'"custom_id": "([^"]+)"', request.body.decode("utf-8", "replace"))
            return _json({"id": "file-in1", "object": "file", "bytes": len(request.body), "created_at": 0,
                          "filename": "x.jsonl", "purpose": "batch"})
        if path == "/v1/batches" and method == "POST":
            self.batch = {"id": "batch_one", "object": "batch", "endpoint": "/v1/chat/completions",
                          "input_file_id": "file-in1", "completion_window": "24h", "status": "validating",
                          "created_at": 0, "request_counts": {"total": len(self.custom_ids), "completed": 0,
                                                              "failed": 0}}
            return _json(self.created(dict(self.batch)))
        if path == "/v1/batches" and method == "GET":
            return _json({"object": "list", "data": [], "has_more": False})
        if path.startswith("/v1/batches/") and path.endswith("/cancel"):
            assert self.batch is not None
            return _json({**self.batch, "status": "cancelling"})
        if path.startswith("/v1/batches/"):
            assert self.batch is not None
            answer = self.poll({**self.batch, "status": "completed", "output_file_id": "file-out1",
                                "request_counts": {"total": len(self.custom_ids), "completed": len(self.custom_ids),
                                                   "failed": 0}})
            if isinstance(answer, Reply):
                return answer
            return Reply(body=answer) if isinstance(answer, bytes) else _json(answer)
        if path == "/v1/files/file-out1/content":
            return self.content(self.custom_ids)
        return Reply(404, json.dumps({"error": {"message": "no such route", "type": "invalid_request_error",
                                                "param": None, "code": None}}).encode())

    @staticmethod
    def _chat(request: Request) -> Reply:
        """A spoken answer when audio is asked for, else a text answer (two-step's text step sent synchronously)."""
        spoken = "audio" in json.loads(request.body)
        return _json(chat_answer() if spoken else chat_answer(content="The ferry runs twice a day."))

    @staticmethod
    def _answered(custom_ids: list[str]) -> Reply:
        return Reply(body=b"".join(output_line(custom_id, "The ferry runs twice a day.") for custom_id in custom_ids),
                     content_type="application/jsonl")


def output_line(custom_id: str, text: str, usage: Json | None = None) -> bytes:
    body = {"id": "chatcmpl-b", "object": "chat.completion", "created": 0, "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": usage or {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}
    return json.dumps({"id": "batch_req_1", "custom_id": custom_id, "error": None,
                       "response": {"status_code": 200, "request_id": "req_b", "body": body}}).encode() + b"\n"


def _json(body: Json) -> Reply:
    return Reply(body=json.dumps(body).encode())


@pytest.fixture()
def api() -> Iterator[HostileApi]:
    with HostileApi() as site:
        yield site


def run(api: HostileApi, folder: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = run_cli("run", str(folder), "-o", str(out), "--captions", "off", "--retry-backoff", "0.001",
                     "--max-attempts", "2", "--log-format", "json", *extra,
                     env=child_env(OPENAI_BASE_URL=api.url("/v1"), OPENAI_API_KEY=KEY))
    assert "Traceback" not in result.stderr, result.stderr
    return result.exit_code, result.stderr


def everything_in(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


def batch_rows(out: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM batches ORDER BY created_at").fetchall()


# -- 1, 2: a server's object keys are data ----------------------------------------------------------------------------
def test_usage_detail_keys_from_the_server_never_reach_a_sidecar(api: HostileApi, tmp_path: Path) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20,
             "prompt_tokens_details": {KEY: 5, ESCAPE: 1, "cached_tokens": 4},
             "completion_tokens_details": {"audio_tokens": 7, f"x{KEY}": 2}}
    api.chat = lambda request: _json(chat_answer(usage=usage))
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out)
    assert code == 0, stderr
    kept = everything_in(out) + stderr.encode()
    assert KEY.encode() not in kept and b"pwned" not in kept
    assert all(b"\x1b" not in p.read_bytes() for p in out.glob("*.json"))
    sidecar = json.loads((out / "ferry.json").read_text())
    # The counts the API defines are kept, as integers.
    assert "cached_tokens" in json.dumps(sidecar) and "audio_tokens" in json.dumps(sidecar)


def test_request_counts_keys_from_the_server_never_reach_state_or_the_log(api: HostileApi, tmp_path: Path) -> None:
    hostile_counts = {"total": 1, "completed": 0, "failed": 0, KEY: 9, ESCAPE: 3, "pending": "lots"}
    api.created = lambda batch: {**batch, "request_counts": hostile_counts}
    api.poll = lambda batch: {**batch, "status": "in_progress", "request_counts": hostile_counts}
    folder, out = one_document(tmp_path), tmp_path / "out"
    for _ in range(2):  # submit, then poll
        code, stderr = run(api, folder, out, "--batch")
        assert code == 0, stderr
        kept = everything_in(out) + stderr.encode()
        assert KEY.encode() not in kept and b"pwned" not in kept
    (row,) = batch_rows(out)
    assert json.loads(row["counts_json"]) == {"total": 1, "completed": 0, "failed": 0}


# -- 3: JSON nested 200,000 deep fails its line or its poll, never the run ------------------------------------------------
def test_a_deeply_nested_poll_answer_fails_the_poll_not_this_run_or_the_next(api: HostileApi, tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    api.poll = lambda batch: b"[" * 200_000
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0 and "batch_unreachable" in stderr, stderr
    # A later run with a new document is not poisoned: the new document is queued, the old batch polled again.
    (folder / "bridge.txt").write_text("The harbour bridge reopens on Monday after two years of repairs.\n")
    api.poll = lambda batch: batch  # completed, with its output file
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    assert (out / "ferry.wav").exists()


def test_a_deeply_nested_output_line_fails_that_line_only(api: HostileApi, tmp_path: Path) -> None:
    folder = one_document(tmp_path)
    (folder / "bridge.txt").write_text("The harbour bridge reopens on Monday after two years of repairs.\n")
    out = tmp_path / "out"
    api.content = lambda ids: Reply(body=b'{"custom_id": "bridge", "response": ' + b"[" * 200_000 + b"\n"
                                    + output_line("ferry", "The ferry runs twice a day."))
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    code, stderr = run(api, folder, out, "--batch", "--batch-fallback", "sync")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert {d["doc_id"]: d["status"] for d in report["documents"]} == {"ferry": "done", "bridge": "done"}
    # bridge's line failed, so it went out synchronously (a chat request); ferry was spoken from its batch answer.
    assert len(api.paths("/v1/chat/completions")) == 1


# -- 5: the server's status is not audiosum's lifecycle ------------------------------------------------------------------
@pytest.mark.parametrize("status", ["collected", "queued", "abandoned", "submitted"])
def test_a_status_the_api_does_not_define_never_ends_or_restarts_a_batch(api: HostileApi, tmp_path: Path,
                                                                        status: str) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    api.created = lambda batch: {**batch, "status": status}
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    # The create answer is broken (an unknown status): nothing is recorded as a batch the API has, and the next run
    # finds the uploaded file's batch or creates it; with a status the API defines it is then polled as usual.
    api.created = lambda batch: batch
    api.poll = lambda batch: {**batch, "status": status}
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    (row,) = batch_rows(out)
    assert row["status"] == "submitted" and row["api_status"] == "validating"
    code, stderr = run(api, folder, out, "--batch")  # polled: the unknown status is a broken answer, reported
    assert code == 0 and "batch_unreachable" in stderr, stderr
    assert api.uploads() == 1 and len([r for r in api.requests if r.method == "POST"
                                                     and r.path == "/v1/batches"]) == 2
    (row,) = batch_rows(out)
    assert row["status"] == "submitted" and row["api_status"] == "validating"
    api.poll = lambda batch: batch  # the batch completes: its answer is spoken
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0 and (out / "ferry.wav").exists(), stderr


def _age(out: Path, hours: float) -> None:
    with sqlite3.connect(out / ".audiosum" / "state.sqlite") as db:
        db.execute("UPDATE batches SET created_at = created_at - ?", (hours * 3600,))


@pytest.mark.parametrize("fallback", ["next-batch", "sync"])
def test_a_batch_the_server_forgot_is_abandoned_after_its_deadline(api: HostileApi, tmp_path: Path,
                                                                   fallback: str) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    code, stderr = run(api, folder, out, "--batch", "--batch-fallback", fallback)
    assert code == 0, stderr
    api.poll = lambda batch: Reply(404, b'{"error": {"message": "No batch found", "type": "invalid_request_error"}}')
    code, stderr = run(api, folder, out, "--batch", "--batch-fallback", fallback)
    assert code == 0 and "batch_unreachable" in stderr, stderr
    _age(out, 31)  # past the API's 24 h window and the margin
    code, stderr = run(api, folder, out, "--batch", "--batch-fallback", fallback)
    assert code == 0 and "batch_abandoned" in stderr, stderr
    assert [row["status"] for row in batch_rows(out)][0] == "abandoned"
    if fallback == "sync":
        assert (out / "ferry.wav").exists() and len(api.paths("/v1/chat/completions")) == 1
    else:
        assert api.uploads() == 2  # queued again, in a new batch


def test_force_gives_up_a_stuck_batch_and_asks_the_api_to_cancel_it(api: HostileApi, tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    api.poll = lambda batch: {**batch, "status": "in_progress"}
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    code, stderr = run(api, folder, out, "--batch", "--force", "--batch-fallback", "sync")
    assert code == 0 and "batch_abandoned" in stderr, stderr
    assert api.paths("/v1/batches/batch_one/cancel")
    assert (out / "ferry.wav").exists()


# -- 9: ids from the server never leave their path -----------------------------------------------------------------------
@pytest.mark.parametrize("field", ["id", "output_file_id"])
def test_ids_that_climb_out_of_their_path_are_never_requested(api: HostileApi, tmp_path: Path, field: str) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    if field == "id":
        api.created = lambda batch: {**batch, "id": "../../evil/x"}
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    api.created = lambda batch: batch
    api.poll = lambda batch: {**batch, field: "../../evil/y"}
    for _ in range(2):
        code, stderr = run(api, folder, out, "--batch")
        assert code == 0, stderr
    assert not [r for r in api.requests if "evil" in r.target or ".." in r.target]


# -- 8: an answer is read with a cap -------------------------------------------------------------------------------------
def endless_answer(opening: bytes, chunks: int, sent: list[int]) -> Reply:
    """An answer that opens a JSON string and never ends it: `chunks` of 64 KB, each counted in sent[0] as it goes."""
    def body() -> Iterator[bytes]:
        yield opening
        for _ in range(chunks):
            sent[0] += 1
            yield b"A" * 65_536
    return Reply(chunks=body())


def test_an_endless_chat_answer_is_refused_past_its_cap(api: HostileApi, tmp_path: Path) -> None:
    sent = [0]
    api.chat = lambda request: endless_answer(b'{"choices": [{"message": {"audio": {"data": "', 20_000, sent)  # 1.3 GB
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out, "--words", "20", "--max-attempts", "1")
    assert code == 1, stderr
    report = json.loads((out / "report.json").read_text())
    assert "over" in report["documents"][0]["reason"]
    # (20 words x 2.5 s + 10 s) x 96 kB/s in base64 and 1 MB: about 8.7 MB, far from what was offered.
    assert sent[0] * 65_536 < 64 * 2**20


# -- 11: audio is judged against its transcript --------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["1 Hz", "4294967280 Hz", "ten minutes for five words"])
def test_audio_that_cannot_be_its_transcript_is_a_broken_answer(api: HostileApi, tmp_path: Path, case: str) -> None:
    if case == "ten minutes for five words":
        wav, transcript = _wav(600, 8_000), "The ferry runs at eight."
    else:
        rate = int(case.split()[0])
        wav = bytearray(_wav(0.5))
        wav[24:28] = rate.to_bytes(4, "little")  # the fmt chunk's sample rate
        wav[28:32] = (rate * 2 & 0xFFFFFFFF).to_bytes(4, "little")  # byte rate
        wav, transcript = bytes(wav), "The ferry runs twice a day and costs four pounds."
    answers = [0]

    def chat(request: Request) -> Reply:
        answers[0] += 1
        return _json(chat_answer(transcript, wav=wav))

    api.chat = chat
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out, "--captions", "sentence")
    assert code == 1, stderr
    report = json.loads((out / "report.json").read_text())
    assert "broken answer" in report["documents"][0]["reason"]
    assert answers[0] == 2  # retried (--max-attempts 2), as any broken answer is
    assert not list(out.glob("*.wav"))


# -- Also: a document changed while its batch was pending is never spoken from the stale answer ---------------------------
def test_a_document_changed_while_its_batch_was_pending_is_queued_again(api: HostileApi, tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    api.poll = lambda batch: {**batch, "status": "in_progress"}
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    (folder / "ferry.txt").write_text("The ferry is cancelled all winter. A bus replaces it from Monday.\n")
    api.poll = lambda batch: batch  # completed: its answer is about the old text
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    assert not (out / "ferry.wav").exists() and not api.paths("/v1/audio/speech")
    assert api.uploads() == 2  # the changed document went into a new batch
    report = json.loads((out / "report.json").read_text())
    assert report["documents"][0]["status"] == "waiting"


def test_the_hostile_peer_is_exercised() -> None:
    """The scripted peer answers in the API's shapes when nobody overrides it (a guard for the tests above)."""
    with HostileApi() as site:
        reply = site.answer(Request("POST", "/v1/files", _headers(), b'{"custom_id": "a"}'))
        assert reply is not None and json.loads(reply.body)["id"] == "file-in1" and site.custom_ids == ["a"]


def _headers() -> Any:
    from email.message import Message

    return Message()



# -- a second reader's findings (review of the fixes above) --------------------------------------------------------------
LONE = "\ud800"  # json.dumps sends it as the escape "\ud800", which decodes to a lone surrogate


def test_a_lone_surrogate_in_a_batch_answer_fails_that_line_not_this_run_or_the_next(api: HostileApi,
                                                                                    tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    api.content = lambda ids: Reply(body=output_line("ferry", f"The ferry {LONE} runs twice a day."))
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    for _ in range(2):  # collected (the line failed), then queued again: no run crashes
        code, stderr = run(api, folder, out, "--batch")
        assert code == 0, stderr


def test_a_lone_surrogate_in_an_error_or_a_transcript_fails_one_document(api: HostileApi, tmp_path: Path) -> None:
    api.chat = lambda request: Reply(400, json.dumps({"error": {"message": f"bad {LONE} thing", "type": "x",
                                                                "code": f"c{LONE}", "param": None}}).encode())
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out)
    assert code == 1, stderr
    assert "\\ud800" in json.loads((out / "report.json").read_text())["documents"][0]["reason"]
    api.chat = lambda request: _json(chat_answer(f"The ferry {LONE} runs."))
    out, second = tmp_path / "out2", tmp_path / "b"
    second.mkdir()
    code, stderr = run(api, one_document(second), out)
    assert code == 1 and "not well-formed" in json.loads((out / "report.json").read_text())["documents"][0]["reason"]
    assert not list(out.glob("ferry.*"))  # nothing left behind for it


def test_an_endless_batch_poll_answer_is_refused_past_its_cap(api: HostileApi, tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0, stderr
    sent = [0]
    api.poll = lambda batch: endless_answer(b'{"id": "batch_one", "status": "in_progress", "x": "', 4096, sent)
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0 and "batch_unreachable" in stderr, stderr
    assert sent[0] * 65_536 < 32 * 2**20  # stopped near the 4 MB cap, not at the end


def test_an_overdue_submission_never_created_is_abandoned_without_creating_it(api: HostileApi, tmp_path: Path) -> None:
    folder, out = one_document(tmp_path), tmp_path / "out"
    api.created = lambda batch: {**batch, "status": "not-a-status"}  # the create fails: recorded as uploaded only
    code, stderr = run(api, folder, out, "--batch")
    assert code == 0 and batch_rows(out)[0]["status"] == "uploaded", stderr
    _age(out, 31)
    creates = sum(1 for r in api.requests if r.method == "POST" and r.path == "/v1/batches")
    code, stderr = run(api, folder, out, "--batch", "--batch-fallback", "sync")
    assert code == 0 and "batch_abandoned" in stderr, stderr
    assert sum(1 for r in api.requests if r.method == "POST" and r.path == "/v1/batches") == creates
    assert (out / "ferry.wav").exists()  # the fallback made it now


def test_format_direct_audio_that_hides_its_length_is_bounded_by_its_transcript(api: HostileApi,
                                                                                tmp_path: Path) -> None:
    """A FLAC written to a pipe declares no length, so nothing judges it before it is decoded: publishing decodes it
    no further than its transcript can take to say (plausible.longest_s), and fails it there."""
    import subprocess

    from pipeline.audio import ffmpeg_exe

    flac = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=24000:cl=mono", "-t", "300",
                           "-f", "flac", "-"], capture_output=True, check=True).stdout
    api.chat = lambda request: _json({**chat_answer("The ferry runs at eight."), "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None, "audio": {
            "id": "audio_x", "expires_at": 2_000_000_000, "transcript": "The ferry runs at eight.",
            "data": base64.b64encode(flac).decode()}}}]})
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out, "--format", "flac", "--loudness", "off")
    assert code == 1, stderr
    reason = json.loads((out / "report.json").read_text())["documents"][0]["reason"]
    assert "longer than" in reason, reason
    assert not list(out.glob("ferry.*"))


def test_a_transcript_far_longer_than_asked_is_a_broken_answer(api: HostileApi, tmp_path: Path) -> None:
    """The transcript is the yardstick the audio is judged by: 1,500 words (which would make an hour of audio look
    plausible) for a 20-word summary is refused and retried. (An hour itself would pass the answer's byte cap first.)"""
    words = " ".join(["ferry"] * 1500) + "."
    api.chat = lambda request: _json(chat_answer(words, wav=_wav(60, 8_000)))
    out = tmp_path / "out"
    code, stderr = run(api, one_document(tmp_path), out, "--words", "20")
    assert code == 1, stderr
    reason = json.loads((out / "report.json").read_text())["documents"][0]["reason"]
    assert "1500 words where about 20 were asked" in reason, reason
