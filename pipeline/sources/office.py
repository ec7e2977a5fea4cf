"""What every reader of an office or book format hands back: text, chapters, title and metadata for the sidecar.

Plain data and the one rule for metadata strings; it reads no format and opens no file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.models import Chapter
from pipeline.sources.blocks import one_line

MAX_META_CHARS = 500


@dataclass(frozen=True, slots=True)
class Read:
    """One document read by a format reader."""

    text: str
    chapters: tuple[Chapter, ...] = ()
    title: str | None = None
    meta: dict[str, str] = field(default_factory=dict)


def core_meta(**values: str | None) -> dict[str, str]:
    """Metadata fields that have a value, each on one line and at most MAX_META_CHARS long."""
    return {key: one_line(value)[:MAX_META_CHARS] for key, value in values.items() if value and one_line(value)}
