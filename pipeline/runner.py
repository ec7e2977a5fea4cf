"""Wires a run: sources → provider → outputs → state → report, with bounded concurrency.

Decides what happens to each document from the error classes; prints nothing itself (callers get events).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import report, sources
from pipeline.errors import ApiError, AuthenticationFailed, DocumentError
from pipeline.models import Attempt, Document, DocumentResult, RejectedDocument, RunSettings
from pipeline.outputs import write_document_outputs
from pipeline.providers import make_provider
from pipeline.providers.base import Provider
from pipeline.state import RunState

ResultListener = Callable[[DocumentResult], None]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    status: str
    totals: dict[str, Any]
    report_json: Path
    report_html: Path
    abort_reason: str | None = None

    @property
    def exit_code(self) -> int:
        if self.abort_reason:
            return 2
        return 1 if self.totals.get("failed") else 0


def settings_for_report(settings: RunSettings) -> dict[str, Any]:
    """Settings as recorded in state and the report: paths as text, and never the API key."""
    values = asdict(settings)
    values.pop("api_key", None)
    values["out_dir"] = str(settings.out_dir)
    values["inputs"] = list(settings.inputs)
    return values


def run(settings: RunSettings, *, on_result: ResultListener | None = None,
        provider: Provider | None = None) -> RunOutcome:
    return asyncio.run(run_async(settings, on_result=on_result, provider=provider))


async def run_async(settings: RunSettings, *, on_result: ResultListener | None = None,
                    provider: Provider | None = None) -> RunOutcome:
    sources.check_inputs(settings.inputs)
    out_dir = settings.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(out_dir)
    try:
        run_id = state.start_run(settings_for_report(settings))
        run = _Run(settings=settings, state=state, run_id=run_id, on_result=on_result,
                   items=sources.iter_inputs(settings.inputs, skip_dir=out_dir))
        active = provider or make_provider(settings)
        try:
            await asyncio.gather(*(run.worker(active) for _ in range(max(1, settings.concurrency))))
        finally:
            if provider is None:
                await active.aclose()
        status = "aborted" if run.abort_reason else "finished"
        state.finish_run(run_id, status)
        built = report.build(state, run_id)
        if run.abort_reason:
            built["abort_reason"] = run.abort_reason
        json_path, html_path = report.write(out_dir, built)
        return RunOutcome(run_id=run_id, status=status, totals=built["totals"],
                          report_json=json_path, report_html=html_path, abort_reason=run.abort_reason)
    finally:
        state.close()


@dataclass
class _Run:
    """The mutable part of one run, shared by its worker tasks (all on one event loop)."""

    settings: RunSettings
    state: RunState
    run_id: str
    on_result: ResultListener | None
    items: Iterator[sources.SourceItem]
    seen: set[str] = field(default_factory=set)
    abort_reason: str | None = None

    async def worker(self, provider: Provider) -> None:
        # Workers share one generator: each pulls the next item only when it is free, so at most
        # `concurrency` documents are in memory at once however long the input is.
        while self.abort_reason is None:
            item = next(self.items, None)
            if item is None:
                return
            if item.id in self.seen:
                result = _failed(item, f"duplicate document id {item.id!r}: an earlier document already uses it",
                                 "DocumentError", 0.0)
                attempts: tuple[Attempt, ...] = ()
            else:
                self.seen.add(item.id)
                result, attempts = await _process(item, provider, self.settings)
            if attempts:
                self.state.record_attempts(self.run_id, item.id, attempts)
            self.state.record_result(self.run_id, result)
            if result.error_class == AuthenticationFailed.__name__ and self.abort_reason is None:
                self.abort_reason = f"the API refused the key ({result.reason}); stopped before the other documents"
            if self.on_result is not None:
                self.on_result(result)


async def _process(item: sources.SourceItem, provider: Provider,
                   settings: RunSettings) -> tuple[DocumentResult, tuple[Attempt, ...]]:
    started = time.monotonic()
    if isinstance(item, RejectedDocument):
        return _failed(item, item.reason, "DocumentError", 0.0), ()
    try:
        summary = await provider.summarise(item, settings)
    except ApiError as exc:
        attempts = tuple(a for a in exc.attempts if isinstance(a, Attempt))
        return _failed(item, str(exc), type(exc).__name__, time.monotonic() - started,
                       requests=len(attempts)), attempts
    except DocumentError as exc:
        return _failed(item, str(exc), type(exc).__name__, time.monotonic() - started), ()
    try:
        wav_name, sidecar_name = await asyncio.to_thread(
            write_document_outputs, settings.out_dir, item, summary, settings)
    except (OSError, ValueError) as exc:
        return _failed(item, f"could not write outputs: {exc}", type(exc).__name__, time.monotonic() - started,
                       requests=summary.requests), summary.attempts
    return DocumentResult(
        doc_id=item.id, source=item.source, status="done", title=item.title,
        wav_name=wav_name, sidecar_name=sidecar_name, transcript=summary.transcript,
        duration_s=round(summary.duration_s, 3), prompt_tokens=summary.usage.prompt_tokens,
        completion_tokens=summary.usage.completion_tokens, requests=summary.requests,
        elapsed_s=round(time.monotonic() - started, 3),
    ), summary.attempts


def _failed(item: Document | RejectedDocument, reason: str, error_class: str, elapsed: float,
            requests: int = 0) -> DocumentResult:
    return DocumentResult(doc_id=item.id, source=item.source, status="failed", title=item.title,
                          reason=reason.replace("\n", " ").strip(), error_class=error_class,
                          requests=requests, elapsed_s=round(elapsed, 3))
