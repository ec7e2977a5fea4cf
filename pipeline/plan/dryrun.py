"""`--dry-run`: read and plan every document, send nothing, and say what the run would do and cost.

Shares sources and plan with the real run so the counts agree; never calls a provider.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import plan, sources
from pipeline.audio import duration_of, recordings
from pipeline.errors import InvalidAudio
from pipeline.models import Document, RunSettings, questions_for
from pipeline.plan.costs import cost_usd, prices_for
from pipeline.providers.openai import build_request_body
from pipeline.providers.openai.prompts import recording_system_prompt
from pipeline.providers.openai.ratelimit import AUDIO_TOKENS_PER_SECOND, answer_tokens, prompt_tokens
from pipeline.state import RunState

# The offline engine's speed where this folder has no earlier offline run to measure: sample_inputs/ on 2 cores
# (tests/bench/bench_local_engine.py) makes about 14 seconds of speech per wall second, start-up included.
LOCAL_REALTIME_FACTOR = 14.0


@dataclass(frozen=True, slots=True)
class DryRunPlan:
    counts: dict[str, int]
    requests: int
    input_tokens: int
    output_text_tokens: int
    output_audio_tokens: int
    audio_minutes: float
    cost_usd: float
    minutes_at_limits: float | None
    limits_note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_run(settings: RunSettings, state: RunState) -> DryRunPlan:
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    input_tokens = audio_in = text_out = audio_out = 0
    requests = 0
    for item in sources.iter_inputs(settings.inputs, skip_dir=settings.out_dir, since=settings.since,
                                    max_items=settings.max_items, already_done=plan.already_done(settings, state),
                                    fetch_limits=sources.fetch_limits(settings)):
        if item.id in seen or not isinstance(item, Document):
            counts["invalid"] += 1
            continue
        seen.add(item.id)
        decision = plan.decide(item, settings, state.document(item.id), force=settings.force).verdict
        if decision == "unchanged":
            counts[decision] += 1
            continue
        heard_s, parts = 0.0, 1
        if item.audio is not None:
            try:
                heard_s = duration_of(item.audio.path, suffix=item.audio.suffix)
            except InvalidAudio:
                counts["invalid"] += 1
                continue
            parts = recordings.part_count(item.audio, heard_s, settings.max_audio_bytes)
            messages: list[dict[str, object]] = [
                {"role": "system", "content": recording_system_prompt(settings.words, None, True)},
                {"role": "user", "content": item.title or ""}]
        else:
            messages = build_request_body(item, settings)["messages"]
        counts[decision] += 1
        # The summary (one request per part of a long recording), then one request per follow-up question. The
        # recording rides along in each follow-up when it fitted in one request; otherwise they carry text.
        questions = len(questions_for(item, settings))
        requests += parts + questions
        input_tokens += prompt_tokens(messages) * (parts + questions)
        audio_in += round(heard_s * AUDIO_TOKENS_PER_SECOND) * (1 + (questions if parts == 1 else 0))
        text, audio = answer_tokens(messages, settings.words, audio_in=item.audio is not None)
        text_out += text * (parts + questions)
        audio_out += 0 if settings.output == "text" else audio * (parts + questions)
    audio_seconds = audio_out / AUDIO_TOKENS_PER_SECOND
    prices = prices_for(settings.provider, settings.model, settings.price_overrides)
    cost = cost_usd(prices, text_in=input_tokens, audio_in=audio_in, text_out=text_out, audio_out=audio_out)
    minutes, note = _duration(settings, requests, input_tokens + audio_in + text_out + audio_out, audio_seconds,
                              state.measured_speed("local") if settings.provider == "local" else None)
    return DryRunPlan(counts=dict(counts), requests=requests if settings.provider == "openai" else 0,
                      input_tokens=input_tokens + audio_in, output_text_tokens=text_out,
                      output_audio_tokens=audio_out, audio_minutes=round(audio_seconds / 60, 2),
                      cost_usd=round(cost, 4), minutes_at_limits=minutes, limits_note=note)


def _duration(settings: RunSettings, requests: int, tokens: int, audio_seconds: float,
              measured: tuple[float, int] | None = None) -> tuple[float | None, str]:
    if settings.provider == "local":
        if measured is None:
            return (round(audio_seconds / LOCAL_REALTIME_FACTOR / 60, 2),
                    f"offline engine at about {LOCAL_REALTIME_FACTOR:g}x real time (no earlier offline run in this "
                    "folder to measure)")
        speed, runs = measured
        return (round(audio_seconds / speed / 60, 2),
                f"offline engine at {speed:.1f}x real time, as measured in this folder's last {runs} offline "
                f"run{'s' if runs != 1 else ''}")
    bounds = []
    if settings.rpm:
        bounds.append(requests / settings.rpm)
    if settings.tpm:
        bounds.append(tokens / settings.tpm)
    if not bounds:
        return None, "limits unknown: give --rpm/--tpm (the run learns them from the server's headers)"
    return round(max(bounds), 2), f"at {settings.rpm or '?'} requests and {settings.tpm or '?'} tokens per minute"


def describe(result: DryRunPlan) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts.items())) or "no documents"
    if result.minutes_at_limits is None:
        when = result.limits_note
    elif result.minutes_at_limits < 1:
        when = f"{result.minutes_at_limits * 60:.0f} s ({result.limits_note})"
    else:
        when = f"{result.minutes_at_limits:.1f} min ({result.limits_note})"
    return (f"audiosum dry run: {counts}\n"
            f"  would send {result.requests} requests · ~{result.input_tokens} input tokens · "
            f"~{result.output_text_tokens} text + {result.output_audio_tokens} audio output tokens\n"
            f"  ~{result.audio_minutes:.1f} audio min · ~${result.cost_usd:.4f} · time: {when}")
