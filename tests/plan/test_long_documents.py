"""Long documents: split on structure within a token budget, summarised part by part, spoken once."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import RunningServer, api_env, run_cli

from pipeline.plan.split import split_for_budget


def _long_report(sections: int, paragraphs: int) -> str:
    out = ["# Annual infrastructure review"]
    for s in range(sections):
        out.append(f"## Section {s + 1}: district {s + 1}")
        for p in range(paragraphs):
            out.append(f"In district {s + 1}, crews repaired {p + 3} bridges and resurfaced {p * 2 + 5} kilometres "
                       f"of road during quarter {p % 4 + 1}. Residents reported {p + 10} fewer complaints than the "
                       f"year before. The budget for the next phase is {p + 2} million pounds, and work on the "
                       f"harbour wall begins in spring. Engineers expect the new drainage to halve flooding "
                       f"incidents by the end of the decade, according to the review.")
    return "\n\n".join(out)


def test_split_keeps_order_and_respects_the_budget() -> None:
    text = _long_report(6, 10)
    parts = split_for_budget(text, 1500)
    assert len(parts) > 1
    assert all(len(p) <= 1500 * 4 for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")
    assert parts[1].startswith("## Section") or parts[1].startswith("In district")
    assert split_for_budget("Short text.", 1500) == ["Short text."]


def test_a_30000_word_document_is_one_narration_by_map_reduce(tone_server: RunningServer, tmp_path: Path) -> None:
    text = _long_report(40, 12)
    words = len(text.split())
    assert 28_000 <= words <= 36_000
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "review.md").write_text(text)
    expected_parts = len(split_for_budget(text, 8000))
    assert expected_parts >= 5
    before = tone_server.stats()["counts"]["requests"]
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    assert tone_server.stats()["counts"]["requests"] - before == expected_parts + 1
    report = json.loads((out / "report.json").read_text())
    (row,) = report["documents"]
    assert row["status"] == "done" and row["requests"] == expected_parts + 1
    assert list(out.glob("*.wav")) == [out / "review.wav"]
    sidecar = json.loads((out / "review.json").read_text())
    assert sidecar["attempts"] == expected_parts + 1
    assert sidecar["transcript"] and "Part 1 of" not in sidecar["transcript"]


def test_narrate_mode_reads_everything_with_chapters(tone_server: RunningServer, tmp_path: Path) -> None:
    from pipeline.plan.split import NARRATE_PART_TOKENS

    text = _long_report(4, 6)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "review.md").write_text(text)
    parts = split_for_budget(text, NARRATE_PART_TOKENS)
    assert len(parts) >= 2
    before = tone_server.stats()["counts"]["requests"]
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), "--mode", "narrate", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    assert tone_server.stats()["counts"]["requests"] - before == len(parts)
    sidecar = json.loads((out / "review.json").read_text())
    starts = [c["start_s"] for c in sidecar["chapters"]]
    assert len(starts) == len(parts) and starts[0] == 0 and starts == sorted(starts)
    assert sidecar["chapters"][0]["title"] == "Annual infrastructure review"
    assert sidecar["duration_s"] > starts[-1]
    # Switching modes is a settings change: the document is made again.
    again = run_cli("run", str(folder), "-o", str(out), env=api_env(tone_server))
    assert "1 done, 0 skipped" in again.stdout


def test_offline_narrate_mode(tmp_path: Path) -> None:
    from conftest import SAMPLE_INPUTS, child_env

    out = tmp_path / "out"
    result = run_cli("run", str(SAMPLE_INPUTS / "notes"), "-o", str(out), "--mode", "narrate", env=child_env())
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((out / "short-reminder.json").read_text())
    original = (SAMPLE_INPUTS / "notes" / "short-reminder.txt").read_text().split()
    assert len(sidecar["transcript"].split()) >= len(original) - 2  # everything is read, nothing summarised
    assert sidecar["chapters"] == [{"start_s": 0.0, "title": sidecar["chapters"][0]["title"]}]
    assert sidecar["cues"] and sidecar["cues"][0][0] == 0.0


def test_stitch_joins_parts_with_pauses_at_measured_starts() -> None:
    import io
    import wave

    from pipeline.audio import wav_info
    from pipeline.audio.stitch import stitch

    def tone_wav(seconds: float, rate: int, channels: int) -> bytes:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(channels)
            writer.setsampwidth(2)
            writer.setframerate(rate)
            writer.writeframes(b"\x10\x00" * channels * int(seconds * rate))
        return buffer.getvalue()

    # The second part has another rate and channel count: it is converted to the first's.
    joined, starts = stitch([tone_wav(1.0, 24000, 1), tone_wav(0.5, 16000, 2), tone_wav(0.25, 24000, 1)],
                            pause_ms=500)
    info = wav_info(joined)
    assert (info.sample_rate, info.channels) == (24000, 1)
    assert starts == [0.0, 1.5, 2.5]
    assert abs(info.duration_s - 2.75) < 0.001


def test_narrate_mode_refuses_a_book(tmp_path: Path) -> None:
    from conftest import child_env

    from pipeline.plan.split import NARRATE_MAX_WORDS

    book = tmp_path / "in" / "book.txt"
    book.parent.mkdir()
    book.write_text("Words and more words. " * (NARRATE_MAX_WORDS // 4 + 1), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", str(book.parent), "-o", str(out), "--mode", "narrate", env=child_env())
    assert result.exit_code == 1
    (row,) = json.loads((out / "report.json").read_text())["documents"]
    assert row["status"] == "failed" and row["reason"].startswith("too long to read aloud: 40004 words")


def test_summaries_over_the_budget_are_summarised_again(tone_server: RunningServer, tmp_path: Path) -> None:
    text = _long_report(40, 12)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "review.md").write_text(text)
    first_round = len(split_for_budget(text, 500))
    # 60-word summaries of this many parts are far over a 500-token budget: a second round (at least) is needed
    # before the spoken summary, whose request then fits the budget.
    assert first_round * 60 * 1.3 > 500 * 2
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), "--max-input-tokens", "500", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((out / "review.json").read_text())
    assert sidecar["parts"] == first_round
    assert sidecar["attempts"] > first_round + 1
