"""Wires a run: sources → provider → outputs → state → report, with bounded concurrency.

Decides what happens to each document from the error classes; prints nothing itself (callers get events).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline import report, sources
from pipeline.errors import ApiError, DocumentError
from pipeline.models import Document, DocumentResult, RejectedDocument, RunSettings
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

    @property
    def exit_code(self) -> int:
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
        items = sources.iter_inputs(settings.inputs, skip_dir=out_dir)
        active = provider or make_provider(settings)
        seen: set[str] = set()
        try:
            await asyncio.gather(*(
                _worker(items, seen, active, settings, state, run_id, on_result)
                for _ in range(max(1, settings.concurrency))
            ))
        finally:
            if provider is None:
                await active.aclose()
        state.finish_run(run_id, "finished")
        built = report.build(state, run_id)
        json_path, html_path = report.write(out_dir, built)
        return RunOutcome(run_id=run_id, status="finished", totals=built["totals"],
                          report_json=json_path, report_html=html_path)
    finally:
        state.close()


async def _worker(items: Iterator[sources.SourceItem], seen: set[str], provider: Provider,
                  settings: RunSettings, state: RunState, run_id: str,
                  on_result: ResultListener | None) -> None:
    # Workers share one generator: each pulls the next item only when it is free, so at most
    # `concurrency` documents are in memory at once however long the input is.
    for item in items:
        if item.id in seen:
            result = _failed(item, f"duplicate document id {item.id!r}: an earlier document already uses it",
                             "DocumentError", 0.0)
        else:
            seen.add(item.id)
            result = await _process(item, provider, settings)
        state.record_result(run_id, result)
        if on_result is not None:
            on_result(result)


async def _process(item: sources.SourceItem, provider: Provider, settings: RunSettings) -> DocumentResult:
    started = time.monotonic()
    if isinstance(item, RejectedDocument):
        return _failed(item, item.reason, "DocumentError", 0.0)
    try:
        summary = await provider.summarise(item, settings)
    except (DocumentError, ApiError) as exc:
        return _failed(item, str(exc), type(exc).__name__, time.monotonic() - started,
                       requests=1 if isinstance(exc, ApiError) else 0)
    try:
        wav_name, sidecar_name = await asyncio.to_thread(
            write_document_outputs, settings.out_dir, item, summary, settings)
    except (OSError, ValueError) as exc:
        return _failed(item, f"could not write outputs: {exc}", type(exc).__name__, time.monotonic() - started)
    return DocumentResult(
        doc_id=item.id, source=item.source, status="done", title=item.title,
        wav_name=wav_name, sidecar_name=sidecar_name, transcript=summary.transcript,
        duration_s=round(summary.duration_s, 3), prompt_tokens=summary.usage.prompt_tokens,
        completion_tokens=summary.usage.completion_tokens, requests=summary.requests,
        elapsed_s=round(time.monotonic() - started, 3),
    )


def _failed(item: Document | RejectedDocument, reason: str, error_class: str, elapsed: float,
            requests: int = 0) -> DocumentResult:
    return DocumentResult(doc_id=item.id, source=item.source, status="failed", title=item.title,
                          reason=reason.replace("\n", " ").strip(), error_class=error_class,
                          requests=requests, elapsed_s=round(elapsed, 3))
