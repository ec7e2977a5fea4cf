"""The data that flows between modules: documents in, spoken summaries and results out.

Plain frozen data classes; no behaviour that touches files, sockets or the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

# Run events (name, fields) for logs and progress: run_start, run_end, retry, rate_limit_pause, stopping.
EventListener = Callable[[str, dict[str, Any]], None]

DEFAULT_MODEL = "gpt-audio-1.5"  # the docs' recommended GA model for audio in/out with Chat Completions
DEFAULT_VOICE = "alloy"
# two-step: a small non-reasoning text model (no hidden reasoning tokens eat max_completion_tokens; Batch takes it)
DEFAULT_TEXT_MODEL = "gpt-4.1-mini"
DEFAULT_TTS_MODEL = "gpt-4o-mini-tts"
DEFAULT_WORDS = 120
DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_PODCAST_BASE_URL = "http://127.0.0.1:8000/feed/"  # what `audiosum serve --feed OUT` serves
STATE_DIR = ".audiosum"  # OUT/.audiosum: the state database, its lock, a batch's spool (OUT's one folder of ours)
MAX_CONCURRENCY = 512  # documents in flight at once, at most (--concurrency's bound, and a Ray pool's default)

# The names a run's choices can take, declared once: RunSettings holds them and the options table
# (pipeline/settings.py) offers exactly these as its choices.
ProviderName = Literal["openai", "local"]  # which engine speaks: the API, or the offline engine
Mode = Literal["summary", "narrate"]  # summarise each document, or read it aloud whole
OutputKind = Literal["text+audio", "text"]  # a spoken summary and sidecar, or a sidecar and .txt only
AudioFormat = Literal["wav", "mp3", "m4a", "opus", "flac"]  # the final audio's format
LogFormat = Literal["text", "json"]  # how a run talks on stderr
Strategy = Literal["chat-audio", "two-step"]  # one chat request answers with audio, or a text model then speech
BatchFallback = Literal["next-batch", "sync"]  # where a line that failed inside a batch goes
Captions = Literal["sentence", "word", "off"]  # the cues of the transcript's VTT
ExecutorName = Literal["local", "ray"]  # where the offline engine's CPU work runs
PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)
MODES: tuple[Mode, ...] = get_args(Mode)
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
AUDIO_FORMATS: tuple[AudioFormat, ...] = get_args(AudioFormat)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
BATCH_FALLBACKS: tuple[BatchFallback, ...] = get_args(BatchFallback)
CAPTIONS: tuple[Captions, ...] = get_args(Captions)
EXECUTORS: tuple[ExecutorName, ...] = get_args(ExecutorName)

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
CUSTOM_VOICE_PREFIX = "voice_"  # a custom voice's id; sent as {"id": ...} in audio.voice


@dataclass(frozen=True, slots=True)
class AudioSource:
    """A recording given as a document: where it is, what its name says it is, and its size; never its bytes."""

    path: Path  # resolved, inside its input root
    suffix: str  # ".wav", ".mp3", ".m4a", ".ogg", ".flac", ...
    size: int


@dataclass(frozen=True, slots=True)
class Chapter:
    """A part of a document's structure (an EPUB's table of contents, a Word or ODT Heading 1/2, a Markdown or HTML
    heading): its title and where its text lies in Document.text (start inclusive, end exclusive)."""

    title: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Document:
    """One text (or recording) to summarise; text is already read and decoded, a recording is only referenced."""

    id: str
    source: str
    text: str
    sha256: str
    title: str | None = None
    voice: str | None = None
    instructions: str | None = None
    # Where the text came from (title, author, link, published, feed_title, extraction, ...); for the sidecar.
    meta: dict[str, str] | None = field(default=None, hash=False)
    audio: AudioSource | None = None  # set for a recording; then text is ""
    followups: tuple[str, ...] | None = None  # questions asked after the summary; None = the run's default
    chapters: tuple[Chapter, ...] = ()  # the text's structure where its format has one; () = one part
    # Why the text is thinner than asked, by a cause that may pass (a feed's own summary because the article could
    # not be fetched): the document is "degraded", and tried again on the next run.
    degraded: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedDocument:
    """A source item that could not become a Document; it fails alone with this reason."""

    id: str
    source: str
    reason: str
    title: str | None = None
    meta: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class PodcastChannel:
    """What podcast.xml says of its channel beyond the title (each settable in a job; None: audiosum's default)."""

    image: str | None = None  # a JPEG or PNG file, 1400-3000 px square; None: a cover made from the title
    author: str | None = None
    owner_name: str | None = None
    owner_email: str | None = None
    copyright: str | None = None
    kind: Literal["episodic", "serial"] = "episodic"  # itunes:type
    locked: bool = True  # podcast:locked: no other host may import this feed
    language: str | None = None  # the channel's language (RFC 5646); None: the run's --language


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run needs, built once (by the CLI or a caller) and never mutated."""

    inputs: tuple[str, ...]
    out_dir: Path
    provider: ProviderName = "local"
    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    words: int = DEFAULT_WORDS
    concurrency: int = 4
    concurrency_given: bool = True  # False: the default; --executor ray then sizes it to the actor pool
    instructions: str | None = None
    api_base: str = DEFAULT_API_BASE  # where the API's requests go (--api-base)
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    local_workers: int = 2
    audio_format: AudioFormat = "wav"
    rpm: int = 0
    tpm: int = 0
    max_attempts: int = 6
    retry_backoff_s: float = 0.5
    force: bool = False
    strict: bool = False  # a degraded document counts as failed (--strict)
    grace_s: float = 30.0
    price_overrides: dict[str, float] = field(default_factory=dict)
    # The public URL of OUT/ podcast.xml links (--podcast-url); None: not given, DEFAULT_PODCAST_BASE_URL is used
    # (this machine's loopback address), and the first run that makes a podcast says so once.
    podcast_url: str | None = None
    podcast_title: str | None = None
    podcast_keep: int = 100
    podcast: PodcastChannel = field(default_factory=PodcastChannel)
    max_input_tokens: int = 8000
    map_model: str = "gpt-4o-mini"
    mode: Mode = "summary"
    since: datetime | None = None  # feeds: only entries published at or after this
    loudness_lufs: float | None = None  # normalise to this integrated loudness; None = leave the level alone
    max_items: int | None = None  # feeds: the newest N entries of each feed
    output: OutputKind = "text+audio"  # "text": a sidecar and .txt, no audio (audio inputs)
    followups: tuple[str, ...] = ()  # default follow-up questions for documents whose item gives none
    max_audio_bytes: int = 20 * 1024 * 1024  # a recording bigger than this is split on silence into parts
    allow_private_links: bool = False  # feeds: follow article links to loopback/private/link-local hosts too
    proxy: str | None = field(default=None, repr=False)  # feeds: fetch through this proxy (environment ones unused)
    strategy: Strategy = "chat-audio"
    text_model: str = DEFAULT_TEXT_MODEL  # two-step: writes the summary
    tts_model: str = DEFAULT_TTS_MODEL  # two-step: speaks it (POST /audio/speech)
    voice_instructions: str | None = None  # two-step: how the speech model speaks (tone, pace, accent)
    batch: bool = False  # two-step: the text step through the Batch API
    batch_fallback: BatchFallback = "next-batch"
    captions: Captions = "sentence"
    language: str = "en"  # what recordings are heard as (the offline recogniser)
    executor: ExecutorName = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a Ray started on this machine
    ray_actors: tuple[int, int] | None = None  # autoscaling bounds of the Ray actor pool; None: from the cluster


def questions_for(document: Document, settings: RunSettings) -> tuple[str, ...]:
    """The follow-up questions for a document: its own (a manifest item's), else the run's default list."""
    return document.followups if document.followups is not None else settings.followups


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    """How one earlier assistant turn travelled in a follow-up request: by its audio id, or as its transcript."""

    turn: int  # 0 = the summary, 1 = the answer to question 1, ...
    via: Literal["audio_id", "transcript"]
    reason: str | None = None  # why the transcript was sent instead: "expired", "rejected: ...", "no audio id"


@dataclass(frozen=True, slots=True)
class FollowUpAnswer:
    """The answer to one follow-up question, and how the conversation before it was sent."""

    question: str
    transcript: str
    wav: bytes = b""  # empty for --output text
    duration_s: float = 0.0
    audio_id: str | None = None
    audio_expires_at: int | None = None
    history: tuple[HistoryTurn, ...] = ()
    # The offline engine: "matched" (sentences chosen for the question) or "lead" (nothing matched, so the opening);
    # None for the API, which does not say.
    basis: Literal["matched", "lead"] | None = None
    audio_format: str = "wav"  # what `wav` holds (see SpokenSummary.audio_format)


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


def total_usage(usages: list[Usage]) -> Usage:
    """Token counts of several requests added up, details key by key."""
    def add(dicts: list[dict[str, int]]) -> dict[str, int]:
        total: dict[str, int] = {}
        for d in dicts:
            for key, value in d.items():
                total[key] = total.get(key, 0) + value
        return total

    return Usage(prompt_tokens=sum(u.prompt_tokens for u in usages),
                 completion_tokens=sum(u.completion_tokens for u in usages),
                 total_tokens=sum(u.total_tokens for u in usages),
                 prompt_tokens_details=add([u.prompt_tokens_details for u in usages]),
                 completion_tokens_details=add([u.completion_tokens_details for u in usages]))


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
class RequestStep:
    """The requests of one step of two-step (the text model's, or the speech endpoint's): for the sidecar."""

    step: Literal["text", "speech"]
    endpoint: str  # "/chat/completions", "/audio/speech", "/batches"
    model: str
    request_ids: tuple[str | None, ...] = ()
    usage: Usage = field(default_factory=Usage)
    usage_estimated: bool = False  # the speech endpoint reports no usage: tokens estimated from the audio's length
    characters: int = 0  # speech: characters spoken

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "endpoint": self.endpoint, "model": self.model, "requests": len(self.request_ids),
                "request_ids": [r for r in self.request_ids if r], "usage": self.usage.as_dict(),
                "usage_estimated": self.usage_estimated, "characters": self.characters or None}


def merged_steps(steps: Iterable[RequestStep]) -> tuple[RequestStep, ...]:
    """Steps of several requests as one per (step, endpoint, model), in first-seen order: ids joined, usage added."""
    merged: dict[tuple[str, str, str], RequestStep] = {}
    for step in steps:
        key = (step.step, step.endpoint, step.model)
        seen = merged.get(key)
        merged[key] = step if seen is None else RequestStep(
            step.step, step.endpoint, step.model, seen.request_ids + step.request_ids,
            total_usage([seen.usage, step.usage]), seen.usage_estimated or step.usage_estimated,
            seen.characters + step.characters)
    return tuple(merged.values())


@dataclass(frozen=True, slots=True)
class SpokenSummary:
    """What a provider returns: verified WAV bytes and exactly the text they speak."""

    wav: bytes
    transcript: str
    sample_rate: int
    duration_s: float
    provider: str
    model: str
    voice: str  # the voice that spoke
    audio_id: str | None = None
    audio_expires_at: int | None = None
    request_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    engine: str | None = None
    attempts: tuple[Attempt, ...] = ()
    parts: int = 1  # > 1: summarised part by part (map), then spoken from the part summaries (reduce)
    cues: tuple[tuple[float, float, str], ...] = ()  # measured (start, end, sentence); empty = none measured
    chapters: tuple[tuple[float, str], ...] = ()  # --mode narrate: (start second, label) of each part
    followups: tuple[FollowUpAnswer, ...] = ()
    heard: str | None = None  # audio input: what the offline engine recognised (the API keeps this to itself)
    input_seconds: float | None = None  # audio input: the recording's length
    voice_requested: str | None = None  # the voice asked for, when another spoke (the offline engine); None = `voice`
    steps: tuple[RequestStep, ...] = ()  # two-step: the text step's and the speech step's requests
    audio_format: str = "wav"  # what `wav` holds: "wav", or the --format the API encoded it in (format-direct)
    # How `cues` were timed: "synthesis" (the offline voice), "aligned" (the transcript matched to the words the
    # offline recogniser heard in this audio) or "estimated" (sentence length; cues_reason says why).
    cues_method: Literal["synthesis", "aligned", "estimated"] | None = None
    cues_reason: str | None = None
    word_cues: tuple[tuple[float, float, str], ...] = ()  # --captions word

    @property
    def requests(self) -> int:
        return len(self.attempts)


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """How one document ended in one run; what the report and state record."""

    doc_id: str
    source: str
    # waiting: its text step is in a batch (--batch); degraded: made, but thinner than asked (`reason` says how)
    status: Literal["done", "degraded", "failed", "skipped", "waiting"]
    title: str | None = None
    reason: str | None = None
    error_class: str | None = None
    main_name: str | None = None  # the main output: <id>.wav/.mp3/.opus/.flac, or <id>.txt with --output text
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
    followups_json: str | None = None  # [{question, transcript, file}, ...] for the report
