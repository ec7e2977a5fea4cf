"""Long documents: split on structure within a token budget, summarised part by part, spoken once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import run_cli

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


# The documented budget arithmetic (README: --max-input-tokens counts about four characters per token). The tests
# judge the split from what reached the server (`serve --record`), never from split_for_budget, the code under test.
CHARS_PER_TOKEN = 4


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _user_text(request: dict) -> str:
    """The user turn's text, without the "Title: …" line a request puts before the document's own words."""
    (user,) = [m for m in request["body"]["messages"] if m["role"] == "user"]
    content = user["content"] if isinstance(user["content"], str) else ""
    return re.sub(r"\ATitle: [^\n]*\n\n", "", content)


def _system_text(request: dict) -> str:
    return next(m["content"] for m in request["body"]["messages"] if m["role"] == "system")


def _check_parts_cover(text: str, parts: list[str], budget_tokens: int) -> None:
    """Nothing lost, nothing repeated, order kept, and every part within the budget."""
    assert len(parts) >= -(-len(text) // (budget_tokens * CHARS_PER_TOKEN))  # at least as many as the sizes need
    assert all(len(p) <= budget_tokens * CHARS_PER_TOKEN for p in parts)
    assert _normalised(" ".join(parts)) == _normalised(text)


def _folder_with_review(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "review.md").write_text(text)
    return folder


def _run_recorded(server: RunningServer, folder: Path, out: Path, *options: str) -> list[dict]:
    before = len(server.recorded())
    result = run_cli("run", str(folder), "-o", str(out), *options, env=api_env(server))
    assert result.exit_code == 0, result.stderr
    return [r for r in server.recorded()[before:] if r["method"] == "POST"]  # not the run's GET models check


def test_a_30000_word_document_is_one_narration_by_map_reduce(recording_server: RunningServer,
                                                             tmp_path: Path) -> None:
    text = _long_report(40, 12)
    words = len(text.split())
    assert 28_000 <= words <= 36_000
    folder = _folder_with_review(tmp_path, text)
    out = tmp_path / "out"
    requests = _run_recorded(recording_server, folder, out)
    *maps, spoken = requests
    # Map requests are text only, each a part of the document, in order; then one spoken request.
    assert all("modalities" not in r["body"] or r["body"]["modalities"] == ["text"] for r in maps)
    assert spoken["body"]["modalities"] == ["text", "audio"]
    parts = [_user_text(r) for r in maps]
    _check_parts_cover(text, parts, 8000)
    assert len(parts) >= 5
    assert [f"part {i} of {len(parts)}" in _system_text(r) for i, r in enumerate(maps, 1)] == [True] * len(parts)
    report = json.loads((out / "report.json").read_text())
    (row,) = report["documents"]
    assert row["status"] == "done" and row["requests"] == len(requests)
    assert list(out.glob("*.wav")) == [out / "review.wav"]
    sidecar = json.loads((out / "review.json").read_text())
    assert sidecar["attempts"] == len(requests)
    assert sidecar["transcript"] and "Part 1 of" not in sidecar["transcript"]


def test_narrate_mode_reads_everything_with_chapters(recording_server: RunningServer, tmp_path: Path) -> None:
    text = _long_report(4, 6)
    folder = _folder_with_review(tmp_path, text)
    out = tmp_path / "out"
    requests = _run_recorded(recording_server, folder, out, "--mode", "narrate")
    parts = [_user_text(r) for r in requests]
    _check_parts_cover(text, parts, 1200)  # README: --mode narrate reads about four minutes (1200 tokens) a request
    assert len(parts) >= 2
    sidecar = json.loads((out / "review.json").read_text())
    starts = [c["start_s"] for c in sidecar["chapters"]]
    assert len(starts) == len(parts) and starts[0] == 0 and starts == sorted(starts)
    assert sidecar["chapters"][0]["title"] == "Annual infrastructure review"
    assert sidecar["duration_s"] > starts[-1]
    # Switching modes is a settings change: the document is made again.
    again = run_cli("run", str(folder), "-o", str(out), env=api_env(recording_server))
    assert "1 done, 0 skipped" in again.stdout


@pytest.mark.slow  # the offline voice reads everything
def test_offline_narrate_mode(tmp_path: Path) -> None:
    from runs import SAMPLE_INPUTS, child_env

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
    from runs import child_env

    from pipeline.plan.split import NARRATE_MAX_WORDS

    book = tmp_path / "in" / "book.txt"
    book.parent.mkdir()
    book.write_text("Words and more words. " * (NARRATE_MAX_WORDS // 4 + 1), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", str(book.parent), "-o", str(out), "--mode", "narrate", env=child_env())
    assert result.exit_code == 1
    (row,) = json.loads((out / "report.json").read_text())["documents"]
    assert row["status"] == "failed" and row["reason"].startswith("too long to read aloud: 40004 words")


def test_summaries_over_the_budget_are_summarised_again(recording_server: RunningServer, tmp_path: Path) -> None:
    text = _long_report(40, 12)
    folder = _folder_with_review(tmp_path, text)
    out = tmp_path / "out"
    requests = _run_recorded(recording_server, folder, out, "--max-input-tokens", "500",
                             "--map-model", "map-model-x", "--model", "gpt-audio-mini")
    # The first round's requests carry pieces of the document itself; later rounds carry summaries of them.
    first_round = [_user_text(r) for r in requests if _normalised(_user_text(r)) in _normalised(text)]
    _check_parts_cover(text, first_round, 500)
    later = requests[len(first_round):]
    # 60-word summaries of this many parts are far over a 500-token budget: a second round (at least) is needed
    # before the spoken summary, whose request then fits the budget.
    assert len(later) >= 2 and later[-1]["body"]["modalities"] == ["text", "audio"]
    assert len(_user_text(later[-1])) <= 500 * CHARS_PER_TOKEN * 1.2
    # Every part summary (all rounds) goes to --map-model, within the budget; only the spoken request uses --model.
    assert [r["body"]["model"] for r in requests] == ["map-model-x"] * (len(requests) - 1) + ["gpt-audio-mini"]
    assert all(len(_user_text(r)) <= 500 * CHARS_PER_TOKEN for r in requests[:-1])
    sidecar = json.loads((out / "review.json").read_text())
    assert sidecar["parts"] == len(first_round)
    assert sidecar["attempts"] == len(requests)
