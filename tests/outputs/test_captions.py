"""Captions from the audio itself: API answers are heard by the offline recogniser and their transcript aligned to the
words heard (cues_method aligned); the offline voice keeps its synthesis times; where hearing fails, or with
--captions off, cues are estimated and the sidecar and VTT say why. --captions word gives word cues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import SAMPLE_INPUTS, child_env, run_cli

from pipeline.audio import duration_of
from pipeline.outputs.captions import word_cues_within

NOTES = SAMPLE_INPUTS / "notes"


def _sidecar_and_vtt(out: Path, doc: str = "short-reminder") -> tuple[dict, str]:  # type: ignore[type-arg]
    return json.loads((out / f"{doc}.json").read_text()), (out / f"{doc}.vtt").read_text()


def test_api_audio_with_no_speech_in_it_is_estimated_with_the_reason(tone_server: RunningServer,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(NOTES), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    sidecar, vtt = _sidecar_and_vtt(out)
    assert sidecar["cues_method"] == "estimated" and "no speech" in sidecar["cues_reason"]  # a tone is not speech
    assert "estimated from sentence length" in vtt and "no speech" in vtt
    assert sidecar["cues"] and sidecar["cues"][-1][1] == pytest.approx(sidecar["duration_s"], abs=0.01)


def test_captions_off_hears_nothing_and_says_so(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(NOTES), "-o", str(out), "--captions", "off", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    sidecar, vtt = _sidecar_and_vtt(out)
    assert sidecar["cues_method"] == "estimated" and sidecar["cues_reason"].startswith("--captions off")
    assert sidecar["cues"] is None and "--captions off" in vtt


def test_word_cues_inside_synthesis_sentences_share_each_sentence_by_length() -> None:
    words = word_cues_within(((0.0, 2.0, "One two."), (2.5, 4.5, "Three four five six.")))
    assert [w[2] for w in words] == ["One", "two.", "Three", "four", "five", "six."]
    assert words[0][0] == 0.0 and words[1][1] == pytest.approx(2.0) and words[2][0] == pytest.approx(2.5)
    assert all(a <= b for a, b, _ in words) and words[-1][1] == pytest.approx(4.5)


@pytest.mark.slow  # Piper speaks on the server, Whisper hears it on the client
@pytest.mark.parametrize("captions", ["sentence", "word"])
def test_api_speech_is_heard_and_its_transcript_aligned(local_server: RunningServer, tmp_path: Path,
                                                        captions: str) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(NOTES), "-o", str(out), "--captions", captions, env=api_env(local_server))
    assert result.exit_code == 0, result.stderr
    sidecar, vtt = _sidecar_and_vtt(out)
    assert sidecar["cues_method"] == "aligned" and sidecar["cues_reason"] is None, sidecar["cues_reason"]
    seconds = duration_of(out / sidecar["audio_file"])
    starts = [cue[0] for cue in sidecar["cues"]]
    assert starts == sorted(starts) and 0 <= starts[0] < 1.0 and sidecar["cues"][-1][1] <= seconds + 0.05
    # Each sentence of the transcript has its cue, in order.
    assert " ".join(cue[2] for cue in sidecar["cues"]).split() == sidecar["transcript"].split()
    assert "NOTE cue times: aligned" in vtt
    if captions == "word":
        words = sidecar["word_cues"]
        assert [w[2] for w in words] == sidecar["transcript"].split()
        assert vtt.count(" --> ") == len(words)
    else:
        assert sidecar["word_cues"] is None and vtt.count(" --> ") == len(sidecar["cues"])


@pytest.mark.slow  # the offline engine speaks
def test_the_offline_voice_gives_word_cues_inside_its_synthesis_times(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(NOTES), "-o", str(out), "--captions", "word", env=child_env())
    assert result.exit_code == 0, result.stderr
    sidecar, vtt = _sidecar_and_vtt(out)
    assert sidecar["cues_method"] == "synthesis" and len(sidecar["word_cues"]) == len(sidecar["transcript"].split())
    assert "synthesis" in vtt and vtt.count(" --> ") == len(sidecar["word_cues"])


def test_a_language_the_offline_recogniser_cannot_hear_is_refused_before_any_work(tmp_path: Path) -> None:
    result = run_cli("run", str(NOTES), "-o", str(tmp_path / "out"), "--language", "de", env=child_env())
    assert result.exit_code == 2 and "English only" in result.stderr
    assert not (tmp_path / "out").exists()
