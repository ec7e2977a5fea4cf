"""The data that flows between modules: documents in, spoken summaries and results out.

Plain frozen data classes; no behaviour that touches files, sockets or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Literal

# Run events (name, fields) for logs and progress: run_start, run_end, retry, rate_limit_pause, stopping.
EventListener = Callable[[str, dict[str, Any]], None]

DEFAULT_MODEL = "gpt-4o-audio-preview"
DEFAULT_VOICE = "alloy"
DEFAULT_WORDS = 120
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


@dataclass(frozen=True, slots=True)
class Document:
    """One text to summarise, already read and decoded."""

    id: str
    source: str
    text: str
    sha256: str
    title: str | None = None
    voice: str | None = None
    instructions: str | None = None
    # Where the text came from (title, author, link, published, feed_title, extraction, ...); for the sidecar.
    meta: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class RejectedDocument:
    """A source item that could not become a Document; it fails alone with this reason."""

    id: str
    source: str
    reason: str
    title: str | None = None
    meta: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run needs, built once (by the CLI or a caller) and never mutated."""

    inputs: tuple[str, ...]
    out_dir: Path
    provider: Literal["openai", "local"] = "local"
    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    words: int = DEFAULT_WORDS
    concurrency: int = 4
    instructions: str | None = None
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    local_workers: int = 2
    audio_format: str = "wav"
    rpm: int = 0
    tpm: int = 0
    max_attempts: int = 6
    retry_backoff_s: float = 0.5
    force: bool = False
    grace_s: float = 30.0
    price_overrides: dict[str, float] = field(default_factory=dict)
    podcast_base_url: str = "http://127.0.0.1:8000/feed/"
    podcast_title: str | None = None
    podcast_keep: int = 100
    max_input_tokens: int = 8000
    map_model: str = "gpt-4o-mini"
    mode: Literal["summary", "narrate"] = "summary"
    since: datetime | None = None  # feeds: only entries published at or after this
    loudness_lufs: float | None = None  # normalise to this integrated loudness; None = leave the level alone
    max_items: int | None = None  # feeds: the newest N entries of each feed


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them (zeros for the local engine)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, int] = field(default_factory=dict)
    completion_tokens_details: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": dict(self.prompt_tokens_details),
            "completion_tokens_details": dict(self.completion_tokens_details),
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request made for a document: how it ended and how long the client then waited."""

    number: int
    outcome: str  # "ok", or the error's cause label (http_500, timeout, broken_answer, ...)
    status: int | None = None
    error_class: str | None = None
    wait_s: float = 0.0
    elapsed_s: float = 0.0
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpokenSummary:
    """What a provider returns: verified WAV bytes and exactly the text they speak."""

    wav: bytes
    transcript: str
    sample_rate: int
    duration_s: float
    provider: str
    model: str
    voice: str
    audio_id: str | None = None
    audio_expires_at: int | None = None
    request_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    engine: str | None = None
    attempts: tuple[Attempt, ...] = ()
    parts: int = 1  # > 1: summarised part by part (map), then spoken from the part summaries (reduce)
    cues: tuple[tuple[float, float, str], ...] = ()  # measured (start, end, sentence); empty = none measured
    chapters: tuple[tuple[float, str], ...] = ()  # --mode narrate: (start second, label) of each part

    @property
    def requests(self) -> int:
        return len(self.attempts)


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """How one document ended in one run; what the report and state record."""

    doc_id: str
    source: str
    status: Literal["done", "failed", "skipped"]
    title: str | None = None
    reason: str | None = None
    error_class: str | None = None
    wav_name: str | None = None
    sidecar_name: str | None = None
    transcript: str | None = None
    duration_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_audio_tokens: int = 0
    completion_audio_tokens: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    meta_json: str | None = None  # the document's meta (feed entry title, author, link, published) as JSON
