"""The dry run prices the same audio three ways side by side: chat-audio, two-step, two-step + batch."""

from __future__ import annotations

import json
from pathlib import Path

from runs import child_env, run_cli

from pipeline.plan.costs import DEFAULT_PRICES, SPEECH_AUDIO_TOKENS_PER_MINUTE, SPEECH_PRICES


def _plan(text_samples: Path, out: Path, *options: str) -> tuple[dict[str, dict[str, object]], str]:
    result = run_cli("run", str(text_samples), "-o", str(out), "--dry-run", "--provider", "openai", "--rpm", "60",
                     *options, env=child_env())
    assert result.exit_code == 0, result.stderr
    plan = json.loads((out / "dry-run.json").read_text())["dry_run"]
    return {path["strategy"]: path for path in plan["paths"]}, result.stdout + result.stderr


def test_three_paths_side_by_side_with_the_run_s_own_marked(text_samples: Path, tmp_path: Path) -> None:
    paths, printed = _plan(text_samples, tmp_path / "out")
    assert list(paths) == ["chat-audio", "two-step", "two-step + batch"]
    chat, two, batch = paths["chat-audio"], paths["two-step"], paths["two-step + batch"]
    assert [chat["chosen"], two["chosen"], batch["chosen"]] == [True, False, False]
    # Two-step asks twice per spoken answer (a text model, then the speech endpoint); a batch does the same work.
    assert two["requests"] == 2 * chat["requests"] == batch["requests"]
    # Per spoken minute, two-step costs about a fifth of chat audio, and the batch's half-price text step makes it
    # cheaper still.
    ratio = float(two["cost_per_spoken_minute_usd"]) / float(chat["cost_per_spoken_minute_usd"])  # type: ignore[arg-type]
    assert 0.1 < ratio < 0.3, ratio
    assert float(batch["cost_usd"]) < float(two["cost_usd"])  # type: ignore[arg-type]
    assert "24 h" in str(batch["note"])
    for name in paths:  # the table is printed too
        assert name in printed


def test_the_chosen_path_follows_the_strategy_and_batch_options(text_samples: Path, tmp_path: Path) -> None:
    paths, _ = _plan(text_samples, tmp_path / "two", "--strategy", "two-step")
    assert [p["chosen"] for p in paths.values()] == [False, True, False]
    paths, _ = _plan(text_samples, tmp_path / "batch", "--batch")  # --batch implies two-step
    assert [p["chosen"] for p in paths.values()] == [False, False, True]


def test_the_speech_step_is_priced_by_the_minute_the_docs_publish() -> None:
    """gpt-4o-mini-tts: $12 per 1M audio tokens and about 1,250 tokens a minute = the published ~$0.015/min."""
    per_minute = SPEECH_PRICES["gpt-4o-mini-tts"].audio_output_per_1m * SPEECH_AUDIO_TOKENS_PER_MINUTE / 1e6
    assert abs(per_minute - 0.015) < 1e-9
    assert DEFAULT_PRICES["gpt-4.1-mini"].audio_output_per_1m == 0  # a text model makes no audio
