"""A transcript's control characters (a server's ESC, BEL, CR) reach no .txt or .vtt raw: they are shown as \\xNN, as
reports show them, so a terminal that prints the file is not steered and a CR hides nothing before it."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import LoopbackSite, Reply, Request
from runs import child_env, run_cli

from pipeline.models import Document, FollowUpAnswer, RunSettings, SpokenSummary
from pipeline.outputs import write_document_outputs

# ESC [2J clears a terminal; BEL rings it; CR returns to the start of the line, so what follows overprints it.
RAW = "The ferry runs twice a day.\x1b[2J\x07 Tickets cost four pounds.\r The first boat leaves at eight."
SHOWN = "The ferry runs twice a day.\\x1b[2J\\x07 Tickets cost four pounds.\\x0d The first boat leaves at eight."
CONTROLS = (b"\x1b", b"\x07", b"\r")


def _no_raw_controls(data: bytes) -> None:
    assert not [c for c in CONTROLS if c in data], data


def _tone_wav(seconds: float = 3.0, rate: int = 24_000) -> bytes:
    """A plain PCM WAV written here by hand (not by pipeline/), long enough for the transcript's words."""
    frames = int(seconds * rate)
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * n / rate))) for n in range(frames))
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2,
                         16, b"data", len(pcm))
    return header + pcm


def _answer(request: Request) -> Reply:
    """Chat completions answer with RAW as the spoken transcript; GET models/<id> names the model."""
    if request.method == "GET":
        model = request.path.rsplit("/", 1)[-1]
        return Reply(200, json.dumps({"id": model, "object": "model", "owned_by": "test"}).encode())
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-audio",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": None, "refusal": None,
                "audio": {"id": "audio_1", "expires_at": 2_000_000_000,
                          "data": base64.b64encode(_tone_wav()).decode(), "transcript": RAW}}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
    return Reply(200, json.dumps(body).encode())


@pytest.fixture(scope="module")
def control_server() -> Iterator[str]:
    with LoopbackSite(_answer) as site:
        yield site.base


def test_the_podcast_txt_and_vtt_show_a_transcripts_control_characters(control_server: str, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "ferry.txt").write_text("The ferry to the island runs twice a day this winter. Tickets cost four "
                                      "pounds. The first boat leaves at eight in the morning.\n")
    out = tmp_path / "out"
    env = child_env(OPENAI_BASE_URL=f"{control_server}/v1", OPENAI_API_KEY="sk-test-controls-0123456789")
    result = run_cli("run", str(inputs), "-o", str(out), "--captions", "off", env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "ferry.json").read_text())["transcript"] == RAW  # the sidecar keeps it (JSON escapes it)
    txt, vtt = (out / "ferry.txt").read_bytes(), (out / "ferry.vtt").read_bytes()
    _no_raw_controls(txt)
    _no_raw_controls(vtt)
    assert txt.decode() == SHOWN + "\n"
    cues = vtt.decode()  # the cues split the transcript at its words: the CR, a space to them, is not in a cue
    assert cues.startswith("WEBVTT") and "day.\\x1b[2J\\x07 Tickets" in cues


def test_text_output_and_text_answers_show_control_characters(tmp_path: Path) -> None:
    """--output text: <id>.txt and each answer's <id>.qN.txt are written from the transcripts the same way."""
    summary = SpokenSummary(wav=b"", transcript=RAW, sample_rate=0, duration_s=0.0, provider="openai",
                            model="gpt-audio", voice="", followups=(FollowUpAnswer(question="When?", transcript=RAW),))
    document = Document(id="ferry", source="ferry.wav", text="", sha256="0" * 64)
    settings = RunSettings(inputs=("ferry.wav",), out_dir=tmp_path, provider="openai", output="text")
    files = write_document_outputs(tmp_path, document, summary, settings, ours=lambda name: True)
    assert [files.main.name, *(f.name for f in files.followups)] == ["ferry.txt", "ferry.q1.txt"]
    for written in (files.main, *files.followups):
        data = (tmp_path / written.name).read_bytes()
        _no_raw_controls(data)
        assert data.decode() == SHOWN + "\n"
