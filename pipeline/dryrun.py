"""`--dry-run`: read and plan every document, send nothing, and say what the run would do and cost.

An orchestrator beside the runner (it reads sources, plan, the wire format's sizes and state); never calls a provider.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import plan, sources
from pipeline.audio import duration_of, recordings
from pipeline.errors import InvalidAudio
from pipeline.models import Document, RunSettings, questions_for
from pipeline.plan.costs import CHARS_PER_TEXT_TOKEN, cost_usd, prices_for, prices_for_run, speech_usage
from pipeline.providers.openai.prompts import recording_system_prompt
from pipeline.providers.openai.ratelimit import (
    AUDIO_IN_TOKENS_PER_SECOND,
    AUDIO_OUT_TOKENS_PER_SECOND,
    answer_tokens,
    prompt_tokens,
)
from pipeline.providers.openai.speech import MAX_INPUT_CHARS
from pipeline.providers.openai.wire import build_request_body
from pipeline.state import RunState

# The offline engine's speed where this folder has no earlier offline run to measure: sample_inputs/ on 2 cores
# (tests/bench/bench_local_engine.py) makes about 14 seconds of speech per wall second, start-up included.
LOCAL_REALTIME_FACTOR = 14.0
CHARS_PER_SPOKEN_WORD = 6.0  # a spoken summary's characters per word, spaces and punctuation included


@dataclass(frozen=True, slots=True)
class PathEstimate:
    """One way of making the same audio through the API: its requests, money and time."""

    strategy: str  # "chat-audio", "two-step", "two-step + batch"
    requests: int
    cost_usd: float
    cost_per_spoken_minute_usd: float | None
    minutes: float | None  # at the limits given (--rpm/--tpm); None: unknown
    note: str
    chosen: bool


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
    paths: tuple[PathEstimate, ...] = ()  # the three API paths side by side, priced with this run's models
    passed_over: str | None = None  # the input folders' files of kinds this version does not read, by kind

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_run(settings: RunSettings, state: RunState) -> DryRunPlan:
    counts: Counter[str] = Counter()
    passed_over: Counter[str] = Counter()
    seen: set[str] = set()
    input_tokens = audio_in = text_out = audio_out = 0
    requests = 0
    for item in sources.iter_inputs(settings.inputs, skip_dir=settings.out_dir, since=settings.since,
                                    max_items=settings.max_items, already_done=plan.already_done(settings, state),
                                    fetch_limits=sources.fetch_limits(settings), passed_over=passed_over):
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
        audio_in += round(heard_s * AUDIO_IN_TOKENS_PER_SECOND) * (1 + (questions if parts == 1 else 0))
        text, audio = answer_tokens(messages, settings.words, audio_in=item.audio is not None)
        text_out += text * (parts + questions)
        audio_out += 0 if settings.output == "text" else audio * (parts + questions)
    audio_seconds = audio_out / AUDIO_OUT_TOKENS_PER_SECOND
    spoken = _Spoken(requests, input_tokens, audio_in, text_out, audio_seconds)
    prices = prices_for(settings.provider, settings.model, settings.price_overrides)
    cost = cost_usd(prices, text_in=input_tokens, audio_in=audio_in, text_out=text_out, audio_out=audio_out)
    minutes, note = _duration(settings, requests, input_tokens + audio_in + text_out + audio_out, audio_seconds,
                              state.measured_speed("local") if settings.provider == "local" else None)
    return DryRunPlan(counts=dict(counts), requests=requests if settings.provider == "openai" else 0,
                      input_tokens=input_tokens + audio_in, output_text_tokens=text_out,
                      output_audio_tokens=audio_out, audio_minutes=round(audio_seconds / 60, 2),
                      cost_usd=round(cost, 4), minutes_at_limits=minutes, limits_note=note,
                      paths=three_paths(settings, spoken), passed_over=sources.passed_over_note(passed_over))


@dataclass(frozen=True, slots=True)
class _Spoken:
    """What the API would be asked for, whatever the path: answers, their tokens and the audio they make."""

    answers: int  # spoken answers (summaries and their parts, follow-up answers)
    text_in: int
    audio_in: int
    text_out: int
    audio_seconds: float


def three_paths(settings: RunSettings, spoken: _Spoken) -> tuple[PathEstimate, ...]:
    """chat-audio, two-step and two-step + batch for the same answers, priced with this run's models (an offline
    run is priced as if sent to the API, for comparison)."""
    minutes = spoken.audio_seconds / 60
    chat = prices_for("openai", settings.model, settings.price_overrides)
    chat_cost = cost_usd(chat, text_in=spoken.text_in, audio_in=spoken.audio_in, text_out=spoken.text_out,
                         audio_out=round(spoken.audio_seconds * AUDIO_OUT_TOKENS_PER_SECOND))
    speech_requests = spoken.answers * max(1, math.ceil(settings.words * CHARS_PER_SPOKEN_WORD / MAX_INPUT_CHARS))
    characters = round(spoken.text_out * CHARS_PER_TEXT_TOKEN)
    speech = speech_usage(settings.tts_model, characters, spoken.audio_seconds)
    paths: list[PathEstimate] = []
    for name, batch in (("two-step", False), ("two-step + batch", True)):
        mixed = prices_for_run({"provider": "openai", "strategy": "two-step", "model": settings.model,
                                "text_model": settings.text_model, "tts_model": settings.tts_model, "batch": batch,
                                "price_overrides": settings.price_overrides})
        cost = cost_usd(mixed, text_in=spoken.text_in + speech.prompt_tokens, audio_in=spoken.audio_in,
                        text_out=spoken.text_out, audio_out=speech.completion_tokens)
        paths.append(_path(name, spoken.answers + speech_requests, cost, minutes, settings, chosen=(
            settings.strategy == "two-step" and settings.batch == batch), per_endpoint=max(spoken.answers,
                                                                                            speech_requests)))
    return (_path("chat-audio", spoken.answers, chat_cost, minutes, settings, chosen=settings.strategy == "chat-audio",
                  per_endpoint=spoken.answers), *paths)


def _path(name: str, requests: int, cost: float, minutes: float, settings: RunSettings, *, chosen: bool,
          per_endpoint: int) -> PathEstimate:
    """Time at --rpm (each model has its own limit, so two-step's two endpoints run side by side); a batch's text
    step may take up to its 24 h window."""
    at_rpm = round(per_endpoint / settings.rpm, 2) if settings.rpm else None
    note = f"at {settings.rpm} requests/min per model" if settings.rpm else "limits unknown (give --rpm)"
    if name.endswith("batch"):
        note = "text step within the Batch API's 24 h window (often minutes), then the speech at " + (
            f"{settings.rpm} requests/min" if settings.rpm else "the learned rate")
    return PathEstimate(name, requests, round(cost, 4), round(cost / minutes, 4) if minutes else None, at_rpm, note,
                        chosen and settings.provider == "openai")


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
            f"  ~{result.audio_minutes:.1f} audio min · ~${result.cost_usd:.4f} · time: {when}"
            + (f"\n  {result.passed_over}" if result.passed_over else "")
            + "".join(f"\n{line}" for line in paths_table(result.paths)))


def paths_table(paths: tuple[PathEstimate, ...]) -> list[str]:
    """The three API paths side by side (the chosen one marked *)."""
    if not paths:
        return []
    lines = ["  the same audio through the API, path by path:",
             f"    {'path':<18} {'requests':>8} {'cost':>10} {'$/spoken min':>12} {'minutes':>8}"]
    for path in paths:
        minutes = f"{path.minutes:.1f}" if path.minutes is not None else "?"
        per = f"{path.cost_per_spoken_minute_usd:.4f}" if path.cost_per_spoken_minute_usd is not None else "-"
        lines.append(f"  {'*' if path.chosen else ' '} {path.strategy:<18} {path.requests:>8} "
                     f"{'$' + format(path.cost_usd, '.4f'):>10} {per:>12} {minutes:>8}   {path.note}")
    return lines
