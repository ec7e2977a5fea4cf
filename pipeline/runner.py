"""Wires a run: sources → plan → provider → outputs → state → report, with bounded concurrency.

Decides what happens to each document from the error classes and stops cleanly on SIGINT/SIGTERM;
prints nothing itself (callers get results and events).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import dryrun, plan, report, sources
from pipeline.batching import BatchPath
from pipeline.errors import ApiError, AuthenticationFailed, DiskFull, OutputClash, UsageError
from pipeline.executors import Executor, make_executor
from pipeline.executors.threads import ThreadExecutor
from pipeline.making import (
    MakeSummary,
    failed_result,
    file_names,
    make_document,
    record_of,
    skipped_result,
    waiting_result,
)
from pipeline.models import (
    DEFAULT_PODCAST_BASE_URL,
    Attempt,
    Document,
    DocumentResult,
    EventListener,
    PodcastChannel,
    RejectedDocument,
    RunSettings,
    questions_for,
)
from pipeline.outputs import (
    claim,
    fsync_folder,
    make_out_dir,
    planned_names,
    podcast,
    remove_outputs,
    remove_stale_temp_files,
)
from pipeline.providers import make_provider
from pipeline.providers.base import Provider
from pipeline.redact import shown_input, url_without_credentials
from pipeline.sources.feeds import is_feed_input
from pipeline.state import DocumentRecord, RunState, locked_state

ResultListener = Callable[[DocumentResult], None]
RUN_FILE_NAMES = frozenset({report.JSON_NAME, report.HTML_NAME, podcast.FEED_NAME})  # the run's files, not a document's

EXIT_FOR_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
MAX_REPORTED_WARNINGS = 50  # a run's warnings kept for report.json (each kind is warned about once or twice)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    status: str  # finished | aborted | interrupted
    totals: dict[str, Any]
    report_json: Path
    report_html: Path
    abort_reason: str | None = None
    stop_signal: int | None = None
    disk_full: bool = False

    @property
    def exit_code(self) -> int:
        if self.stop_signal is not None:
            return EXIT_FOR_SIGNAL.get(signal.Signals(self.stop_signal), 128 + self.stop_signal)
        if self.disk_full:
            return 1  # the documents not made are failures of this run, not a configuration error
        if self.abort_reason:
            return 2
        return 1 if self.totals.get("failed") else 0


def settings_for_report(settings: RunSettings) -> dict[str, Any]:
    """Settings as recorded in state and the report: paths as text, and never the API key."""
    values = asdict(settings)
    values.pop("api_key", None)
    values["proxy"] = url_without_credentials(settings.proxy) if settings.proxy else None
    values["api_base"] = url_without_credentials(settings.api_base)
    values["out_dir"] = str(settings.out_dir)
    values["inputs"] = [shown_input(raw) for raw in settings.inputs]
    values["since"] = settings.since.isoformat() if settings.since else None
    return values


def run(settings: RunSettings, *, on_result: ResultListener | None = None, on_event: EventListener | None = None,
        provider: Provider | None = None) -> RunOutcome:
    return asyncio.run(run_async(settings, on_result=on_result, on_event=on_event, provider=provider))


def check_settings(settings: RunSettings) -> None:
    """UsageError (exit 2) for inputs that cannot work with these settings, before anything is written."""
    sources.check_inputs(settings.inputs)
    sources.check_out_dir(settings.inputs, settings.out_dir)
    if settings.mode == "narrate" and settings.followups:
        raise UsageError("follow-up questions are asked after a summary; --mode narrate reads the text aloud instead")
    if settings.output == "text":
        sources.check_text_output(settings.inputs, skip_dir=settings.out_dir)
    if settings.provider == "local" and settings.language != "en":
        from pipeline.engine.listen import check_language

        check_language(settings.language)  # the bundled recogniser is English-only: say so before any work


async def run_async(settings: RunSettings, *, on_result: ResultListener | None = None,
                    on_event: EventListener | None = None, provider: Provider | None = None) -> RunOutcome:
    check_settings(settings)
    out_dir = settings.out_dir
    make_out_dir(out_dir)
    with locked_state(out_dir, before_open=lambda: remove_stale_temp_files(out_dir)) as state:
        state.before_commit = lambda: fsync_folder(out_dir)
        state.mark_abandoned_runs()
        claim_run_files(out_dir, state)
        podcast.adopt_earlier_transcripts(out_dir, state)
        return await _run_locked(settings, state, on_result, on_event, provider)


async def _run_locked(settings: RunSettings, state: RunState, on_result: ResultListener | None,
                      on_event: EventListener | None, provider: Provider | None) -> RunOutcome:
    run_id = state.start_run(settings_for_report(settings))
    passed_over: Counter[str] = Counter()  # input folders' files of kinds this version does not read
    items = sources.iter_inputs(settings.inputs, skip_dir=settings.out_dir, since=settings.since,
                                fetch_limits=sources.fetch_limits(settings), passed_over=passed_over,
                                max_items=settings.max_items, already_done=plan.already_done(settings, state))
    current = _Run(settings=settings, state=state, run_id=run_id, on_result=on_result, on_event=on_event,
                   items=items, pull_in_thread=any(is_feed_input(raw) for raw in settings.inputs))
    current.emit("run_start", run_id=run_id, provider=settings.provider,
                 inputs=[shown_input(raw) for raw in settings.inputs])
    failure = await _run_workers(current, provider)
    if failure is not None:
        state.finish_run(run_id, "crashed", f"internal error: {type(failure).__name__}: {failure}")
        report.write(settings.out_dir, report.build(state, run_id), state)
        raise failure
    status = "interrupted" if current.stop_signal else ("aborted" if current.abort_reason else "finished")
    if status == "finished" and current.batch is not None and current.batch.waiting:
        status = "waiting"  # documents wait for a batch: a later run (the nightly line) collects them
    if (note := sources.passed_over_note(passed_over)) and status != "interrupted":
        current.emit("warning", kind="passed_over", message=note)  # not a failure: said, counted, left alone
    for warning in _podcast_warnings(settings, state, run_id):
        current.emit("warning", **warning)
    try:
        built = _finish_run(settings, state, run_id, status, current.abort_reason, current.warnings)
    except DiskFull as exc:
        # Not even the run's end could be recorded: say so; the next run marks this one crashed and goes on.
        current.stop_for_full_disk(exc)
        totals = report.build(state, run_id)["totals"]  # reads only; the report file could not be written
        return RunOutcome(run_id=run_id, status="aborted", totals=totals,
                          report_json=settings.out_dir / report.JSON_NAME,
                          report_html=settings.out_dir / report.HTML_NAME, abort_reason=current.abort_reason,
                          disk_full=True)
    current.emit("run_end", run_id=run_id, status=status, **{k: v for k, v in built["totals"].items()
                                                             if not isinstance(v, dict)})
    return RunOutcome(run_id=run_id, status=status, totals=built["totals"],
                      report_json=settings.out_dir / report.JSON_NAME, report_html=settings.out_dir / report.HTML_NAME,
                      abort_reason=current.abort_reason, stop_signal=current.stop_signal, disk_full=current.disk_full)


def _podcast_warnings(settings: RunSettings, state: RunState, run_id: str) -> list[dict[str, str]]:
    """Warnings about the podcast, said only where they can matter: when the feed has episodes and the run makes a
    podcast (a feed among its inputs, or a podcast option given). The loopback-URL one is said once an output folder
    (a given --podcast-url, even the default, acknowledges it); a channel value a directory would reject, each run."""
    makes_podcast = (settings.podcast_url is not None or settings.podcast_title is not None
                     or settings.podcast != PodcastChannel() or any(is_feed_input(raw) for raw in settings.inputs))
    if not makes_podcast or not any(True for _ in state.episodes(1)):
        return []
    url = settings.podcast_url or DEFAULT_PODCAST_BASE_URL
    warnings = podcast.channel_warnings(settings.podcast, podcast_url=url,
                                        title=podcast.channel_title(settings.out_dir, settings.podcast_title))
    if settings.podcast_url is None and not state.warned_before(run_id, "podcast_url_local"):
        warnings.insert(0, {"kind": "podcast_url_local", "option": "--podcast-url",
                            "message": f"{podcast.FEED_NAME} links its episodes under {DEFAULT_PODCAST_BASE_URL} (the "
                                       "default), which no other device can reach: give --podcast-url (or "
                                       "podcast_url in the job) the address a podcast app will fetch them from "
                                       "(said once for this folder; giving it, even as this default, says you know)"})
    return warnings


async def _run_workers(current: _Run, provider: Provider | None) -> BaseException | None:
    """Run the worker tasks until the inputs are done or the run stops; the exception of a crashed worker (a bug),
    after the others were stopped, else None. Signal handlers, the state flusher and a provider made here end
    with it."""
    settings = current.settings
    # With --executor ray the offline engine and the steps share one actor pool (the cluster, opened at preflight):
    # the steps make it, or take the one of a provider the caller made.
    current.executor = make_executor(settings, on_event=current.event,
                                     cluster=provider.cluster if provider is not None else None)
    active = provider or make_provider(settings, on_event=current.event, cluster=current.executor.cluster)
    loop = asyncio.get_running_loop()
    installed = _install_signal_handlers(loop, current)
    flusher = asyncio.create_task(_flush_state_periodically(current.state, current))
    failure: BaseException | None = None
    try:
        if not await _checked_before_sending(current, active):
            return None
        current.batch = await _batch_path(current, active)
        in_flight = current.executor.documents_in_flight(max(1, settings.concurrency))
        if in_flight != settings.concurrency:  # the report says what the run did
            try:
                current.state.correct_setting(current.run_id, "concurrency", in_flight)
            except DiskFull as exc:
                current.stop_for_full_disk(exc)
        current.tasks = [asyncio.create_task(current.worker(active)) for _ in range(in_flight)]
        done, _ = await asyncio.wait(current.tasks, return_when=asyncio.FIRST_EXCEPTION)
        failure = next((t.exception() for t in done if not t.cancelled() and t.exception() is not None), None)
        if failure is not None:
            # A bug, not a document's fault: stop everyone, but still leave a report that says so.
            current.cancel_in_flight()
            await asyncio.wait(current.tasks)
        elif current.batch is not None and current.stop_signal is None and current.abort_reason is None:
            await current.batch.submit()
    finally:
        if current.batch is not None:
            current.batch.discard()  # a stopped run's queue: its documents are queued again by the next run
        flusher.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)
        if current.grace_timer is not None:
            current.grace_timer.cancel()
        try:
            if provider is None:
                await active.aclose()
        finally:
            await current.executor.aclose()
    return failure


async def _batch_path(current: _Run, provider: Provider) -> BatchPath | None:
    """--batch with the API: earlier batches brought forward before any document; None otherwise."""
    if not current.settings.batch:
        return None
    service = provider.batches()
    if service is None:
        current.emit("warning", kind="batch_needs_api", option="--batch",
                     message="--batch sends two-step's text step through the OpenAI Batch API; the offline engine "
                             "has no batches, so the documents are made now")
        return None
    batch = BatchPath(current.settings, current.state, current.run_id, service, current.emit)
    await batch.bring_forward()
    return batch


async def _checked_before_sending(current: _Run, provider: Provider) -> bool:
    """The provider's one check before any document (does the server offer the model?): False, with the run's abort
    reason set, when it says the run cannot work (an unknown model, a refused key: exit 2). A server failing the
    check is met again by the documents, which report it their usual way."""
    try:
        await provider.preflight()  # the model and the key first: a refusal should not wait for a cluster
    except UsageError as exc:
        current.abort_reason = str(exc)
        return False
    except AuthenticationFailed as exc:
        current.abort_reason = f"the API refused the key ({exc}) at the model check; no document was sent"
        return False
    except ApiError:
        pass
    try:
        await current.executor.preflight()  # --executor ray: no Ray, or no cluster, is exit 2 here
    except UsageError as exc:
        current.abort_reason = str(exc)
        return False
    return True


def _finish_run(settings: RunSettings, state: RunState, run_id: str, status: str,
                abort_reason: str | None, warnings: list[dict[str, Any]]) -> dict[str, Any]:
    """Record the run's end, write its report and rebuild the podcast feed; DiskFull if there is no room."""
    state.finish_run(run_id, status, abort_reason, warnings)
    built = report.build(state, run_id)
    report.write(settings.out_dir, built, state)
    # Also after --output text runs: text answers are not episodes (podcast.build skips them), but a document
    # that was an episode until now must leave the feed.
    podcast.build(settings.out_dir, state, base_url=settings.podcast_url or DEFAULT_PODCAST_BASE_URL,
                  title=settings.podcast_title, keep=settings.podcast_keep, channel=settings.podcast,
                  language=settings.language)
    return built


def claim_run_files(out_dir: Path, state: RunState) -> None:
    """report.json, report.html and podcast.xml are the run's: a file of those names that audiosum did not make
    stops the run before anything is sent (exit 2)."""
    try:
        claim(out_dir, state, None, set(RUN_FILE_NAMES))
    except OutputClash as exc:
        raise UsageError(str(exc)) from exc


def dry_run(settings: RunSettings) -> tuple[dryrun.DryRunPlan, tuple[Path, ...]]:
    """Plan the run without sending anything. The plan goes to OUT/dry-run.json and OUT/dry-run.html (claimed like
    any output); report.json and report.html are left describing the last real run. Returns the files written."""
    check_settings(settings)
    make_out_dir(settings.out_dir)
    with locked_state(settings.out_dir) as state:
        names = set(report.DRY_RUN_NAMES)
        if state.document(report.DRY_RUN_ID) is not None:
            # A document with that id owns dry-run.json as its sidecar: its files are never replaced by a plan.
            names.discard(report.DRY_RUN_JSON_NAME)
        try:
            claim(settings.out_dir, state, None, names)
        except OutputClash as exc:
            raise UsageError(str(exc)) from exc
        run_id = state.start_run(settings_for_report(settings))
        result = dryrun.plan_run(settings, state)
        state.finish_run(run_id, "dry-run")
        built = report.build(state, run_id)
        built["dry_run"] = result.as_dict()
        return result, report.write_dry_run(settings.out_dir, built, state, names)


async def _flush_state_periodically(state: RunState, run: _Run) -> None:
    """Commit batched state even when no document finishes for a while (slow engines, slow servers)."""
    from pipeline.state import COMMIT_EVERY_S

    while True:
        await asyncio.sleep(COMMIT_EVERY_S)
        try:
            state.commit()
        except DiskFull as exc:
            run.stop_for_full_disk(exc)
            return


async def _in_daemon_thread(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) in a daemon thread. Not asyncio.to_thread: its executor's threads are joined when the loop
    and the interpreter shut down, so a second Ctrl-C would still wait out a slow feed fetch (up to its deadline)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile (a stop): nobody wants the item any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, error = function(*args), None
        except BaseException as exc:
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop is closed: the run is over

    threading.Thread(target=work, name="audiosum-pull", daemon=True).start()
    return await future


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, run: _Run) -> list[int]:
    if threading.current_thread() is not threading.main_thread():
        return []
    installed: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, run.on_signal, signum)
        installed.append(signum)
    return installed


@dataclass
class _Run:
    """The mutable part of one run, shared by its worker tasks (all on one event loop)."""

    settings: RunSettings
    state: RunState
    run_id: str
    on_result: ResultListener | None
    on_event: EventListener | None
    items: Iterator[sources.SourceItem]
    in_flight: set[str] = field(default_factory=set)
    abort_reason: str | None = None
    disk_full: bool = False
    stop_signal: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    made: int = 0  # documents made (status done) so far in this run
    grace_timer: asyncio.TimerHandle | None = None
    batch: BatchPath | None = None  # --batch: where each document's text step goes
    executor: Executor = field(default_factory=ThreadExecutor)  # where publishing and caption hearing run (--executor)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # the run's warning events, for report.json
    # Feed items fetch article pages while being pulled: do that in a thread so the loop keeps serving.
    pull_in_thread: bool = False
    pull_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def next_item(self) -> sources.SourceItem | None:
        if not self.pull_in_thread:
            return next(self.items, None)
        async with self.pull_lock:  # a generator may be advanced by one thread at a time
            if self.stop_signal is not None or self.abort_reason is not None:
                return None  # stopped while waiting for the lock: start no new page fetch
            return await _in_daemon_thread(next, self.items, None)

    def emit(self, event: str, **fields: Any) -> None:
        self.event(event, fields)

    def event(self, event: str, fields: dict[str, Any]) -> None:
        """Every run event passes here: warnings are kept for the report, then the caller's listener hears it."""
        if event == "warning" and len(self.warnings) < MAX_REPORTED_WARNINGS:
            self.warnings.append({k: v for k, v in fields.items() if isinstance(v, (str, int, float, type(None)))})
        if self.on_event is not None:
            self.on_event(event, fields)

    def on_signal(self, signum: int) -> None:
        if self.stop_signal is None:
            # First signal: take no new documents; in-flight ones get `grace_s` to finish.
            self.stop_signal = signum
            self.emit("stopping", signal=signal.Signals(signum).name, grace_s=self.settings.grace_s)
            self.grace_timer = asyncio.get_running_loop().call_later(self.settings.grace_s, self.cancel_in_flight)
        else:
            # A second signal: abandon in-flight work now (atomic writes mean nothing partial is left).
            self.emit("stopping_now", signal=signal.Signals(signum).name)
            self.cancel_in_flight()

    def stop_for_full_disk(self, error: DiskFull) -> None:
        """No room in OUT: send nothing more (every request costs money and its answer could not be saved)."""
        if not self.disk_full:
            self.disk_full = True
            self.abort_reason = str(error)
            self.cancel_in_flight()

    def cancel_in_flight(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def worker(self, provider: Provider) -> None:
        # Workers share one generator: each pulls the next item only when it is free, so at most
        # `concurrency` documents are in memory at once however long the input is.
        while self.abort_reason is None and self.stop_signal is None:
            item = await self.next_item()
            if self.stop_signal is not None or self.abort_reason is not None:
                return  # stopped while this item was being pulled: leave it for the next run
            if item is None:
                return
            # A rejected item's own reason comes first: it writes nothing, so its (fallback) id clashing with an
            # earlier one harms nothing, and "duplicate" would hide what is really wrong with it.
            if isinstance(item, RejectedDocument):
                self._finish_failed(failed_result(item, item.reason, "DocumentError", 0.0))
                continue
            # Earlier documents of this run are in state; the ones still being made are in in_flight.
            if item.id in self.in_flight or self.state.seen_in_run(self.run_id, item.id):
                result = failed_result(item, f"duplicate document id {item.id!r}: an earlier document already uses it",
                                 "DocumentError", 0.0)
                self._finish(result, (), None)
                continue
            item = self._case_distinct(item)
            self.in_flight.add(item.id)
            try:
                await self._make(item, provider)
            finally:
                self.in_flight.discard(item.id)

    def _case_distinct(self, item: Document) -> Document:
        """An id that differs from a known one only in case would name the same files on a case-insensitive file
        system (macOS, Windows): it gets a suffix from its own spelling, the same on every run."""
        if self.state.document(item.id) is not None:
            return item
        folded = item.id.lower()
        if self.state.case_twin(item.id) is None and not any(d.lower() == folded for d in self.in_flight):
            return item
        return dataclasses.replace(item, id=f"{item.id}-{hashlib.sha256(item.id.encode()).hexdigest()[:6]}")

    async def _make(self, item: Document, provider: Provider) -> None:
        """Skip the document if it is unchanged since an earlier run, else make and record it."""
        record = self.state.document(item.id)
        decision = plan.decide(item, self.settings, record, force=self.settings.force)
        if decision.verdict == "unchanged" and record is not None:
            self._finish(skipped_result(item, record), (), None)
            return
        if self.settings.mode == "narrate" and item.audio is None and questions_for(item, self.settings):
            reason = "follow-up questions are asked after a summary; --mode narrate reads the text aloud instead"
            self._finish_failed(failed_result(item, reason, "DocumentError", 0.0))
            return
        make: MakeSummary = functools.partial(provider.summarise, item, self.settings)
        line = None
        if self.batch is not None:
            route = self.batch.route(item, decision.fingerprint)
            if route.kind == "wait":
                self._finish(waiting_result(item, route.reason), (), None)
                return
            if route.kind == "speak" and route.line is not None:
                make = self.batch.speaker(item, route.line)
                line = route.line
        try:
            # Before anything is sent: a file in the way would fail the document after its requests were paid for.
            self._claim(item.id, planned_names(item, self.settings).all)
        except (OutputClash, DiskFull) as exc:
            self._finish_failed(failed_result(item, str(exc), type(exc).__name__, 0.0))
            return
        started = time.time()
        result, attempts, written = await make_document(item, make, self.settings, self._claim, self.executor)
        if line is not None and self.batch is not None and result.status in ("done", "degraded"):
            self.batch.spoken(line)
        if written is not None and record is not None:
            # Files the last version of this document had and this one does not (fewer questions, another
            # --output): left behind they would look like part of it.
            stale = file_names(record) - file_names(written)
            self.state.release_outputs(remove_outputs(self.settings.out_dir, stale, self.state))
        self._finish(result, attempts, record_of(item, result, written, decision.fingerprint, self.run_id, started,
                                              record))

    def _claim(self, doc_id: str, names: set[str]) -> frozenset[str]:
        return claim(self.settings.out_dir, self.state, doc_id, names)

    def _finish_failed(self, result: DocumentResult) -> None:
        """A document that failed before anything was sent. A doc-id state has never seen gets its row (status
        failed, no files), so `status` counts it and the next run tries it again; a known one keeps its row and the
        files it has."""
        first = None
        if self.state.document(result.doc_id) is None:
            first = DocumentRecord(
                doc_id=result.doc_id, source=result.source, title=result.title, input_sha256="", fingerprint="",
                status="failed", error=result.reason, attempts=0, duration_s=0.0, transcript=None, run_id=self.run_id,
                started_at=None, finished_at=time.time(), main_name=None, main_sha256=None, main_size=None,
                main_mtime_ns=None, sidecar_name=None, sidecar_sha256=None, sidecar_size=None, sidecar_mtime_ns=None)
        self._finish(result, (), first)

    def _finish(self, result: DocumentResult, attempts: tuple[Attempt, ...], record: DocumentRecord | None) -> None:
        if result.status == "degraded" and self.settings.strict:
            # --strict: thinner than asked is a failure (exit 1; not an episode; made again by the next run). Its
            # files stay recorded as audiosum's, so that run replaces them.
            result = dataclasses.replace(result, status="failed", error_class="DocumentError",
                                         reason=f"degraded (--strict): {result.reason}")
            record = dataclasses.replace(record, status="failed", error=result.reason) if record else None
        try:
            with self.state.transaction():
                if attempts:
                    self.state.record_attempts(self.run_id, result.doc_id, attempts)
                self.state.record_result(self.run_id, result)
                if record is not None:
                    self.state.save_document(record)
        except DiskFull as exc:
            self.stop_for_full_disk(exc)
        if result.error_class == DiskFull.__name__:
            self.stop_for_full_disk(DiskFull(result.reason or "no space left"))
        if result.status in ("done", "degraded"):
            self.made += 1
        if result.error_class == AuthenticationFailed.__name__ and self.abort_reason is None:
            # Say what happened: documents made earlier, and others already sent when the refusal came back.
            others = len(self.in_flight - {result.doc_id})
            self.abort_reason = (f"the API refused the key ({result.reason}); {self.made} document(s) of this run were "
                                 f"made before it, {others} already sent were left to finish (see their results), "
                                 "and no more were started")
        if self.on_result is not None:
            self.on_result(result)
