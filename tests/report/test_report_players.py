"""The report page plays every audio file a run makes, in every --format, and offers no player for text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import run_cli

from pipeline.audio.publish import FORMATS, is_audio_file
from pipeline.report import page as report_html

QUESTIONS = ["What is the first step?", "Who checks the result?"]


def _player(name: str) -> str:
    return f'<audio controls preload="none" src="{name}"></audio>'


@pytest.mark.parametrize("audio_format", FORMATS)
def test_the_page_has_a_player_for_the_summary_and_each_answer(audio_format: str, tone_server: RunningServer,
                                                               tmp_path: Path) -> None:
    (tmp_path / "steps.txt").write_text("First the valve is closed. Then the pressure is read twice. "
                                        "The night shift checks the reading and signs the log.\n", encoding="utf-8")
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"id": "steps", "path": "steps.txt", "followups": QUESTIONS}) + "\n",
                        encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", str(manifest), "-o", str(out), "--format", audio_format, env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr + result.stdout
    (row,) = json.loads((out / "report.json").read_text(encoding="utf-8"))["documents"]
    names = [row["main_name"], *(answer["file"] for answer in row["followups"])]
    assert names == [f"steps.{audio_format}", f"steps.q1.{audio_format}", f"steps.q2.{audio_format}"]
    assert all((out / name).is_file() for name in names)
    page = (out / "report.html").read_text(encoding="utf-8")
    for name in names:
        assert _player(name) in page, name
    assert page.count("<audio ") == 3


def test_text_outputs_get_no_player() -> None:
    page = report_html.render({"documents": [{
        "doc_id": "call", "source": "call.wav", "status": "done", "main_name": "call.txt", "transcript": "t",
        "followups": [{"question": "Why?", "transcript": "Because.", "file": "call.q1.txt"}]}]})
    assert "<audio" not in page and "Because." in page


@pytest.mark.parametrize("name", ["a.wav", "a.MP3", "a.q1.opus", "a.flac"])
def test_every_format_audiosum_writes_is_audio(name: str) -> None:
    assert is_audio_file(name)
    assert {f".{audio_format}" for audio_format in FORMATS} >= {".wav", ".mp3", ".opus", ".flac"}


@pytest.mark.parametrize("name", ["a.txt", "a.vtt", "a.json", "a", "", "wav", "a.wav.txt"])
def test_other_names_are_not_audio(name: str) -> None:
    assert not is_audio_file(name)
