"""The offline engine: real extractive summaries spoken by the packaged neural voice."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import SAMPLE_INPUTS, child_env, run_cli

from pipeline.engine import extractive, text


def test_summary_is_made_of_document_sentences_near_the_target_length() -> None:
    document = (SAMPLE_INPUTS / "reports" / "community-energy-study.md").read_text()
    spoken = extractive.summarise(document, 80)
    words = sum(len(s.split()) for s in spoken)
    assert 40 <= words <= 110
    source_sentences = {s.text for s in text.sentences(document)}
    assert all(s.rstrip(".") in {t.rstrip(".") for t in source_sentences} for s in spoken)
    joined = " ".join(spoken)
    assert "http" not in joined and "#" not in joined and "**" not in joined


def test_markdown_is_flattened_to_speakable_sentences() -> None:
    sentences = text.sentences("# Heading one\n\nSee [the guide](https://example.org/x) for *more* detail. "
                               "Visit https://example.org now.\n\n- first item\n- second item\n\n```\ncode()\n```\n")
    texts = [s.text for s in sentences]
    assert texts[0] == "Heading one" and sentences[0].is_heading
    assert "See the guide for more detail." in texts
    assert "Visit now." in texts
    assert not any("code()" in t for t in texts)


def test_offline_run_speaks_with_the_neural_voice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), str(SAMPLE_INPUTS / "news" / "river-cleanup-volunteers.txt"),
                     "-o", str(out), "--words", "40", env=child_env())
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["provider"] == "local"
    assert report["totals"]["done"] == 2  # a folder's document and a single file's
    for row in report["documents"]:
        sidecar = json.loads((out / row["sidecar_name"]).read_text())
        assert sidecar["engine"].startswith("en_US-joe-medium")
        with wave.open(str(out / row["main_name"]), "rb") as reader:
            assert reader.getframerate() == 22050 and reader.getsampwidth() == 2
            seconds = reader.getnframes() / reader.getframerate()
            samples = reader.readframes(reader.getnframes())
        assert abs(seconds - sidecar["duration_s"]) < 0.01
        # Speech, not silence: a real voice has plenty of loud samples.
        assert max(abs(int.from_bytes(samples[i:i + 2], "little", signed=True))
                   for i in range(0, len(samples), 200)) > 3000
        # Roughly 2-4 words a second is what a narrator speaks.
        assert 1.5 < len(sidecar["transcript"].split()) / seconds < 4.5
        # Cue times are the real synthesis times, in order, and the VTT says so.
        starts = [cue[0] for cue in sidecar["cues"]]
        assert starts == sorted(starts) and starts[0] == 0
        assert sidecar["cues"][-1][1] == pytest.approx(seconds, abs=0.01)
        vtt = (out / f"{row['doc_id']}.vtt").read_text()
        assert "synthesis, the real start" in vtt and vtt.count(" --> ") == len(sidecar["cues"])
        assert sidecar["cues_method"] == "synthesis"


@pytest.mark.slow  # speaks with Piper on both ends
def test_client_against_server_with_the_local_engine(local_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), env=api_env(local_server))
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((out / "short-reminder.json").read_text())
    assert sidecar["provider"] == "openai" and sidecar["sample_rate"] == 22050
    assert "office" in sidecar["transcript"].lower()


# Chosen by the dense TF-IDF implementation before the sparse, pooled one replaced it: the rewrite was for
# memory, not taste. A deliberate change to the ranking updates these.
def test_summary_chooses_what_the_dense_implementation_chose() -> None:
    document = (SAMPLE_INPUTS / "reports" / "community-energy-study.md").read_text()
    assert extractive.summarise(document, 80, "A title") == [
        "A title.",
        "This study examined whether the Wrenfield District could reduce household energy bills and local carbon "
        "emissions by investing in shared solar panels and neighbourhood battery storage.",
        "Over twelve months, we monitored three pilot sites covering 418 homes, three schools and a community hall, "
        "and compared them with 400 similar homes that were not part of the pilot.",
        "Across all three sites, the average annual electricity bill for participating households was 1,038 pounds, "
        "compared with 1,250 pounds in the comparison group.",
    ]


def test_answer_is_the_sentences_about_what_was_asked() -> None:
    # The feeding quantities are the answer; sentences sharing only "starter" (or only "feeding") are not.
    document = (SAMPLE_INPUTS / "howto" / "sourdough-starter.md").read_text()
    assert extractive.answer("What should I feed the starter?", document, 30) == [
        "Feed with 50 grams of flour and 50 grams of water.",
        "Keep the starter on the counter and feed it once or twice a day.",
    ]
