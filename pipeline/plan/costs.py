"""What a run costs in money: a price table per model (USD per million tokens) applied to token counts.

Prices change; the defaults are the published list prices when written and a job's [prices] table overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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
}
FREE = Prices(0.0, 0.0, 0.0, 0.0)


def prices_for(provider: str, model: str, overrides: dict[str, float] | None = None) -> Prices:
    if provider == "local":
        return FREE
    base = DEFAULT_PRICES.get(model, DEFAULT_PRICES["gpt-4o-audio-preview"])
    return base.with_overrides(overrides) if overrides else base


def cost_usd(prices: Prices, *, text_in: int, audio_in: int, text_out: int, audio_out: int) -> float:
    return (text_in * prices.text_input_per_1m + audio_in * prices.audio_input_per_1m
            + text_out * prices.text_output_per_1m + audio_out * prices.audio_output_per_1m) / 1_000_000
