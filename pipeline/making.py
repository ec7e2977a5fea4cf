"""One document made: its spoken summary (the provider's, or a batch answer spoken) timed for captions, published
(format, loudness, the feed's copy) and written into OUT, and the result and record the run keeps of it.

Called by the runner for each document; decides nothing about the run (order, concurrency, stopping).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from pipeline.audio import plausible
from pipeline.audio.publish import (
    DEFAULT_LOUDNESS_LUFS,
    PublishedAudio,
    PublishOptions,
    feed_copy_format,
    is_audio_file,
    publish,
    publish_encoded,
)
from pipeline.errors import ApiError, DiskFull, DocumentError, OutputClash
from pipeline.executors import Executor
from pipeline.models import (
    Attempt,
    Document,
    DocumentResult,
    RejectedDocument,
    RunSettings,
    SpokenSummary,
)
from pipeline.outputs import (
    DocumentFiles,
    document_names,
    write_document_outputs,
)
from pipeline.outputs.captions import timed_cues
from pipeline.redact import visible
from pipeline.state import DocumentRecord

Claim = Callable[[str, set[str]], frozenset[str]]
MakeSummary = Callable[[], Awaitable[SpokenSummary]]


class Processed(NamedTuple):
    """What making one document came to: its result, the requests made for it, and its files (None: none written)."""

    result: DocumentResult
    attempts: tuple[Attempt, ...]
    written: DocumentFiles | None


async def make_document(item: Document, make: MakeSummary, settings: RunSettings,
                   claim_names: Claim, executor: Executor) -> Processed:
    """make() the spoken summary (the provider's summarise, or a batch answer spoken), time its captions, publish
    it (both on `steps`: threads here, or the Ray pool), write it."""
    started = time.monotonic()
    try:
        summary = await timed_cues(await make(), settings, executor)
    except (ApiError, DocumentError) as exc:  # both carry the requests already made for the document
        attempts = tuple(a for a in exc.attempts if isinstance(a, Attempt))
        return Processed(failed_result(item, str(exc), type(exc).__name__, time.monotonic() - started,
                                 requests=len(attempts)), attempts, None)
    published = None
    published_answers: tuple[PublishedAudio, ...] = ()
    feed_audio = None
    # The podcast feed links only what every app plays: a wav, opus or flac main file gets an mp3 copy, made in the
    # same publishing call (one decode of the source, in the executor's thread or Ray pool).
    feed_format = feed_copy_format(settings.audio_format) if settings.output != "text" else None
    if settings.output != "text":
        # Chapter marks (a narration read part by part) go into the mp3 and m4a files, the feed's copy included.
        options = dataclasses.replace(publish_options(item, settings), chapters=summary.chapters,
                                      max_seconds=plausible.longest_s(plausible.spoken_units(summary.transcript)))
        try:
            if settings.audio_format != "wav" or settings.loudness_lufs is not None:
                # Audio the API sent in --format itself is tagged and measured, never re-encoded (format-direct).
                published = await executor.publish(_publisher(summary.audio_format), summary.wav,
                                                   dataclasses.replace(options, feed_format=feed_format))
                feed_audio = published.feed_copy
                # The answers to follow-up questions are published the same way (format, loudness, tags).
                published_answers = tuple([await executor.publish(_publisher(answer.audio_format), answer.wav,
                                                               dataclasses.replace(options, chapters=(), tags={
                                                                   **options.tags,
                                                                   "title": f"{options.tags['title']}: "
                                                                            f"{answer.question}"}))
                                           for answer in summary.followups])
            elif feed_format is not None:
                # The WAV stays as it came; its copy is a published file, at the level every published format
                # gets unless --loudness says otherwise (-16 LUFS, what podcast apps expect).
                feed_audio = await executor.publish(publish, summary.wav, dataclasses.replace(
                    options, format=feed_format, loudness_lufs=DEFAULT_LOUDNESS_LUFS))
        except (DocumentError, ValueError) as exc:  # InvalidAudio, AudioToolFailed; ValueError: a tag publish refuses
            # The prefix says which stage failed: the spoken summary was made, its publishing was not.
            error_class = type(exc).__name__ if isinstance(exc, DocumentError) else DocumentError.__name__
            return Processed(failed_result(item, f"could not publish the audio: {exc}", error_class,
                                     time.monotonic() - started, requests=summary.requests), summary.attempts, None)
    try:
        # Claimed (and committed) on the loop's thread before the writer thread may replace any of them.
        ours = claim_names(item.id, document_names(item, summary, settings, published, published_answers,
                                                   feed_audio=feed_audio).all)
        written = await asyncio.to_thread(write_document_outputs, settings.out_dir, item, summary, settings,
                                          published, published_answers, feed_audio=feed_audio,
                                          ours=ours.__contains__)
    except (OutputClash, DiskFull, DocumentError) as exc:  # DocumentError: audio that will not strip (InvalidAudio)
        return Processed(failed_result(item, str(exc), type(exc).__name__, time.monotonic() - started,
                                 requests=summary.requests), summary.attempts, None)
    except (OSError, ValueError) as exc:
        return Processed(failed_result(item, f"could not write outputs: {exc}", type(exc).__name__,
                                 time.monotonic() - started, requests=summary.requests), summary.attempts, None)
    duration = published.duration_s if published is not None else summary.duration_s
    thinner = degraded_because(item)
    return Processed(DocumentResult(
        doc_id=item.id, source=item.source, status="degraded" if thinner else "done", title=item.title,
        reason=thinner,
        main_name=written.main.name, sidecar_name=written.sidecar.name, transcript=summary.transcript,
        duration_s=round(duration, 3), prompt_tokens=summary.usage.prompt_tokens,
        completion_tokens=summary.usage.completion_tokens,
        prompt_audio_tokens=summary.usage.prompt_tokens_details.get("audio_tokens", 0),
        completion_audio_tokens=summary.usage.completion_tokens_details.get("audio_tokens", 0),
        requests=summary.requests,
        elapsed_s=round(time.monotonic() - started, 3), meta_json=_meta_json(item),
        followups_json=_followups_json(summary, written),
    ), summary.attempts, written)


def degraded_because(item: Document) -> str | None:
    """Why a made document is thinner than asked, or None: its text fell back to something less (the source says
    so: a feed's own summary for an article that could not be fetched). Estimated captions are recorded in the
    sidecar and the VTT (cues_method, cues_reason) but not yet counted here."""
    return item.degraded


def _publisher(audio_format: str) -> Callable[[bytes, PublishOptions], PublishedAudio]:
    """publish() normalises and encodes a WAV; publish_encoded() takes audio the API already encoded."""
    return publish if audio_format == "wav" else publish_encoded


def file_names(files: DocumentRecord | DocumentFiles) -> set[str]:
    """Every output file a document has: its audio (or .txt), sidecar and answers, and with audio the podcast's
    <id>.txt and <id>.vtt transcripts (which --output text does not make)."""
    if isinstance(files, DocumentFiles):
        main, sidecar = files.main.name, files.sidecar.name
        names = {main, sidecar, *(f.name for f in files.extras)}
    else:
        main, sidecar = files.main_name or "", files.sidecar_name or ""
        names = {n for n in (main, sidecar) if n} | {extra[0] for extra in json.loads(files.extra_files_json or "[]")}
    if is_audio_file(main) and sidecar.endswith(".json"):
        stem = sidecar[: -len(".json")]
        names |= {f"{stem}.txt", f"{stem}.vtt"}
    return names


def _followups_json(summary: SpokenSummary, written: DocumentFiles) -> str | None:
    if not summary.followups:
        return None
    return json.dumps([{"question": a.question, "transcript": a.transcript, "file": f.name}
                       for a, f in zip(summary.followups, written.followups)], ensure_ascii=False)


def publish_options(item: Document, settings: RunSettings) -> PublishOptions:
    """Format, loudness and tags (title, feed or 'audiosum' as artist, podcast title as album, date)."""
    meta = item.meta or {}
    published = str(meta.get("published") or "")[:10]
    tags = {"title": item.title or item.id, "artist": meta.get("feed_title") or "audiosum",
            "album": settings.podcast_title or f"audiosum: {settings.out_dir.resolve().name}",
            "date": published or time.strftime("%Y-%m-%d"), "comment": "Spoken summary made by audiosum"}
    return PublishOptions(format=settings.audio_format, loudness_lufs=settings.loudness_lufs, tags=tags)


def record_of(item: Document, result: DocumentResult, written: DocumentFiles | None, fingerprint: str, run_id: str,
            started: float, previous: DocumentRecord | None) -> DocumentRecord:
    """The document's row in state. A failure wrote nothing and leaves the last version's files in place: their
    names stay recorded, so the next success can still remove the ones it no longer makes (the status says
    failed, so nothing is skipped on their account)."""
    if written is not None:
        main, sidecar = written.main, written.sidecar
        files: dict[str, Any] = {
            "main_name": main.name, "main_sha256": main.sha256, "main_size": main.size, "main_mtime_ns": main.mtime_ns,
            "sidecar_name": sidecar.name, "sidecar_sha256": sidecar.sha256, "sidecar_size": sidecar.size,
            "sidecar_mtime_ns": sidecar.mtime_ns,
            "extra_files_json": json.dumps([[f.name, f.sha256, f.size, f.mtime_ns] for f in written.extras])
            if written.extras else None}
    else:
        files = {name: getattr(previous, name) if previous is not None else None for name in _FILE_FIELDS}
    return DocumentRecord(
        doc_id=item.id, source=item.source, title=item.title, input_sha256=item.sha256, fingerprint=fingerprint,
        status=result.status, error=result.reason, attempts=result.requests, duration_s=result.duration_s,
        transcript=result.transcript, run_id=run_id, started_at=started, finished_at=time.time(),
        followups_json=result.followups_json, degraded_retry=int(result.status == "degraded" and bool(item.degraded)),
        **files)


_FILE_FIELDS = ("main_name", "main_sha256", "main_size", "main_mtime_ns", "sidecar_name", "sidecar_sha256",
                "sidecar_size", "sidecar_mtime_ns", "extra_files_json")


def _meta_json(item: Document | RejectedDocument) -> str | None:
    return json.dumps(item.meta, ensure_ascii=False) if item.meta else None


def skipped_result(item: Document, record: DocumentRecord) -> DocumentResult:
    return DocumentResult(doc_id=item.id, source=item.source, status="skipped", title=item.title,
                          reason="unchanged since an earlier run", main_name=record.main_name,
                          sidecar_name=record.sidecar_name, transcript=record.transcript,
                          duration_s=record.duration_s, meta_json=_meta_json(item),
                          followups_json=record.followups_json)


def waiting_result(item: Document, reason: str) -> DocumentResult:
    return DocumentResult(doc_id=item.id, source=item.source, status="waiting", title=item.title, reason=reason,
                          meta_json=_meta_json(item))


def failed_result(item: Document | RejectedDocument, reason: str, error_class: str, elapsed: float,
            requests: int = 0) -> DocumentResult:
    return DocumentResult(doc_id=item.id, source=item.source, status="failed", title=item.title,
                          reason=visible(reason, one_line=True).strip(), error_class=error_class,
                          requests=requests, elapsed_s=round(elapsed, 3), meta_json=_meta_json(item))
