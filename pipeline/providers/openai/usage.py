"""An answer's `usage` object read into Usage: shared by chat answers and batch output lines.

Keeps only the counts CompletionUsage defines, as non-negative integers: a server's own keys (which can carry a key
or terminal escapes) are data, never names that reach a sidecar.
"""

from __future__ import annotations

from pipeline.models import Usage

# CompletionUsage's detail objects, as the API defines them (openai-openapi: CompletionUsage).
PROMPT_DETAILS = ("audio_tokens", "cached_tokens", "text_tokens", "image_tokens", "cache_write_tokens")
COMPLETION_DETAILS = ("accepted_prediction_tokens", "audio_tokens", "reasoning_tokens", "text_tokens",
                      "rejected_prediction_tokens")
MAX_COUNT = 2**53  # a count past this is not a token count (and would not round-trip through JSON readers)


def count_of(value: object) -> int | None:
    """value as a token or request count: a non-negative int (not a bool) below MAX_COUNT, else None."""
    return value if type(value) is int and 0 <= value < MAX_COUNT else None


def counts_of(raw: object, names: tuple[str, ...]) -> dict[str, int]:
    """The named counts of a server's object (other keys, and values that are not counts, left out)."""
    if not isinstance(raw, dict):
        return {}
    return {name: found for name in names if (found := count_of(raw.get(name))) is not None}


def usage_of(raw: object) -> Usage:
    """An answer's `usage` object as Usage (unknown keys and non-integers left out)."""
    if not isinstance(raw, dict):
        return Usage()

    def count(name: str) -> int:
        return count_of(raw.get(name)) or 0

    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
        prompt_tokens_details=counts_of(raw.get("prompt_tokens_details"), PROMPT_DETAILS),
        completion_tokens_details=counts_of(raw.get("completion_tokens_details"), COMPLETION_DETAILS),
    )
