"""An answer's `usage` object read into Usage: shared by chat answers and batch output lines."""

from __future__ import annotations

from pipeline.models import Usage


def usage_of(raw: object) -> Usage:
    """An answer's `usage` object as Usage (unknown keys and non-integers left out)."""
    if not isinstance(raw, dict):
        return Usage()

    def ints(value: object) -> dict[str, int]:
        return {k: v for k, v in value.items() if isinstance(v, int)} if isinstance(value, dict) else {}

    def count(name: str) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
        prompt_tokens_details=ints(raw.get("prompt_tokens_details")),
        completion_tokens_details=ints(raw.get("completion_tokens_details")),
    )
