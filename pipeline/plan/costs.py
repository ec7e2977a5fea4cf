"""What a run costs in money: a price table per model (USD per million tokens) applied to token counts.

Prices change; the defaults are the published list prices when written and a job's [prices] table overrides them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipeline.models import Usage


@dataclass(frozen=True, slots=True)
class Prices:
    text_input_per_1m: float
    text_output_per_1m: float
    audio_input_per_1m: float
    audio_output_per_1m: float

    def with_overrides(self, overrides: dict[str, float]) -> Prices:
        return replace(self, **overrides)


# USD per 1M tokens for the audio chat models (check against the current price list).
DEFAULT_PRICES: dict[str, Prices] = {
    "gpt-4o-audio-preview": Prices(2.50, 10.00, 40.00, 80.00),
    "gpt-4o-mini-audio-preview": Prices(0.15, 0.60, 10.00, 20.00),
    "gpt-audio": Prices(2.50, 10.00, 32.00, 64.00),
    # developers.openai.com/api/docs/models/gpt-audio-1.5: text $2.50/$10, audio $32/$64 per 1M tokens.
    "gpt-audio-1.5": Prices(2.50, 10.00, 32.00, 64.00),
    "gpt-audio-mini": Prices(0.60, 2.40, 10.00, 20.00),
    # text models: two-step's writer (--text-model) and the map step of long documents (--map-model)
    "gpt-4.1-mini": Prices(0.40, 1.60, 0.0, 0.0),
    "gpt-4.1-nano": Prices(0.10, 0.40, 0.0, 0.0),
    "gpt-4o-mini": Prices(0.15, 0.60, 0.0, 0.0),
}
BATCH_DISCOUNT = 0.5  # the Batch API's price, as a share of the synchronous one
FREE = Prices(0.0, 0.0, 0.0, 0.0)

# The speech endpoint's models: text in, audio out. gpt-4o-mini-tts: $0.60 text in and $12 audio out per 1M tokens,
# which OpenAI estimates at $0.015 per spoken minute, i.e. about 1,250 audio tokens a minute. Its answers carry no
# usage, so a two-step run estimates the speech step's tokens from the characters sent and the audio's length.
SPEECH_PRICES: dict[str, Prices] = {
    "gpt-4o-mini-tts": Prices(0.60, 0.0, 0.0, 12.00),
}
SPEECH_AUDIO_TOKENS_PER_MINUTE = 1250.0
CHARS_PER_TEXT_TOKEN = 4.0


def speech_usage(model: str, characters: int, seconds: float) -> Usage:
    """The speech endpoint's usage, estimated (it reports none): text tokens in, audio tokens out."""
    text = math.ceil(characters / CHARS_PER_TEXT_TOKEN)
    audio = math.ceil(seconds / 60 * SPEECH_AUDIO_TOKENS_PER_MINUTE)
    return Usage(prompt_tokens=text, completion_tokens=audio, total_tokens=text + audio,
                 prompt_tokens_details={"text_tokens": text}, completion_tokens_details={"audio_tokens": audio})


def prices_for(provider: str, model: str, overrides: dict[str, float] | None = None) -> Prices:
    if provider == "local":
        return FREE
    base = DEFAULT_PRICES.get(model, DEFAULT_PRICES["gpt-4o-audio-preview"])
    return base.with_overrides(overrides) if overrides else base


def prices_for_run(settings: Mapping[str, Any]) -> Prices:
    """One price row for a run's recorded settings (report.json's `settings`). Two-step mixes models: text in and out
    at the text model's prices (half with --batch), recordings heard at the audio model's, audio out at the speech
    model's; the speech step's few text tokens in are counted at the text model's price."""
    provider, overrides = str(settings.get("provider", "")), settings.get("price_overrides") or None
    chat = prices_for(provider, str(settings.get("model", "")), overrides)
    if settings.get("strategy") != "two-step" or provider == "local":
        return chat
    text = prices_for(provider, str(settings.get("text_model", "")))
    share = BATCH_DISCOUNT if settings.get("batch") else 1.0
    speech = SPEECH_PRICES.get(str(settings.get("tts_model", "")), SPEECH_PRICES["gpt-4o-mini-tts"])
    mixed = Prices(text.text_input_per_1m * share, text.text_output_per_1m * share, chat.audio_input_per_1m,
                   speech.audio_output_per_1m)
    return mixed.with_overrides(overrides) if overrides else mixed


def cost_usd(prices: Prices, *, text_in: int, audio_in: int, text_out: int, audio_out: int) -> float:
    return (text_in * prices.text_input_per_1m + audio_in * prices.audio_input_per_1m
            + text_out * prices.text_output_per_1m + audio_out * prices.audio_output_per_1m) / 1_000_000
