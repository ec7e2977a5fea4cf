"""The `audiosum` command: thin click commands that build settings and call the library.

Parses options and maps outcomes to exit codes; all behaviour lives in runner, server and friends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import click
import cloup

from pipeline import __version__
from pipeline.errors import DiskFull, LockHeld, UsageError
from pipeline.models import LogFormat, RunSettings
from pipeline.redact import for_log
from pipeline.settings import (
    build_settings,
    job_api_base_warning,
    merge,
    renamed_options,
    run_options,
    with_env_file,
)

EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the output folder; cron may simply try later
EXIT_CRASH = 1


@dataclass
class ErrorSink:
    """Where a command's errors go: one plain line, or with `--log-format json` one JSON event, so that a log of
    JSON lines stays JSON lines whatever went wrong. `secret` (the key, once known) is redacted from every message."""

    json: bool = False
    secret: str | None = None

    def error(self, kind: str, text_line: str, message: str, exit_code: int, **extra: Any) -> None:
        if not self.json:
            click.echo(text_line, err=True)
            return
        event = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": "error", "kind": kind,
                 "message": for_log(message, self.secret), "exit_code": exit_code,
                 **{key: for_log(str(value), self.secret) for key, value in extra.items()}}
        click.echo(json.dumps(event, ensure_ascii=False), err=True)


@contextlib.contextmanager
def exits_on_errors(sink: ErrorSink | None = None) -> Iterator[ErrorSink]:
    """Usage errors exit 2 and a held lock exits 75, each with one line on stderr and no traceback; with a JSON
    sink each is a JSON event, and so is a crash (exit 1, its traceback in the event)."""
    sink = sink or ErrorSink()
    try:
        yield sink
    except UsageError as exc:
        sink.error("usage", f"audiosum: error: {exc}", str(exc), EXIT_USAGE)
        sys.exit(EXIT_USAGE)
    except LockHeld as exc:
        sink.error("locked", f"audiosum: {exc}", str(exc), EXIT_LOCKED)
        sys.exit(EXIT_LOCKED)
    except DiskFull as exc:  # before a run could start or after it ended (the run itself reports its own)
        sink.error("disk_full", f"audiosum: stopped: {exc}", str(exc), 1)
        sys.exit(1)
    except click.ClickException:
        raise  # click prints its own (the group's main makes it JSON when asked)
    except Exception as exc:
        if not sink.json:
            raise  # a bug: the traceback, as Python prints it
        sink.error("crash", "", f"internal error: {type(exc).__name__}: {exc}", EXIT_CRASH,
                   traceback="".join(traceback.format_exception(exc)))
        sys.exit(EXIT_CRASH)


def json_log_requested(args: Sequence[str]) -> bool:
    """`run ... --log-format json` on this command line, seen before click parses it (its own usage errors too)."""
    args = list(args)
    if "run" not in args:
        return False
    after = args[args.index("run") + 1:]
    return "--log-format=json" in after or any(
        a == "--log-format" and b == "json" for a, b in itertools.pairwise(after))


class _Commands(click.Group):
    """The group, with `--log-format json` honoured for click's own errors (a bad option, a missing value)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not (standalone_mode and json_log_requested(argv)):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        sink = ErrorSink(json=True, secret=os.environ.get("OPENAI_API_KEY", "").strip() or None)
        try:
            returned = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            sink.error("usage", "", exc.format_message(), exc.exit_code)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            sink.error("aborted", "", "aborted", 1)
            sys.exit(1)
        except Exception as exc:  # outside exits_on_errors: a bug in the command's own setup
            sink.error("crash", "", f"internal error: {type(exc).__name__}: {exc}", EXIT_CRASH,
                       traceback="".join(traceback.format_exception(exc)))
            sys.exit(EXIT_CRASH)
        sys.exit(returned if isinstance(returned, int) else 0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="audiosum")
def cli() -> None:
    """Turn documents into spoken summaries: a WAV and a transcript per document, and a run report.

    With no OPENAI_API_KEY it runs fully offline (extractive summary + a neural voice); with a key, or
    OPENAI_BASE_URL pointing at a compatible server, it asks a speaking model through the Chat
    Completions audio interface.
    """


# cloup's Command shows the options in the sections the options table declares (settings.GROUPS).
@cli.command("run", cls=cloup.Command, short_help="Summarise documents into spoken WAVs, sidecars and a report.")
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@run_options(click.option("--job", "job_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                          help="A job file (jobs/NAME.toml) with the run's settings; options given here override it."))
@click.pass_context
def run_command(ctx: click.Context, inputs: tuple[str, ...], job_path: Path | None, **options: object) -> None:
    """Summarise INPUT (folders of documents and recordings, .jsonl/.csv manifests, single files, feeds) into OUT.

    With --job, the job file supplies the inputs, output folder and settings; anything given on the
    command line wins over the file. A rerun skips documents whose input and settings are unchanged
    and whose outputs are intact.
    """
    from pipeline import runner
    from pipeline.report.console import ConsoleOutput, summary_line

    log_format, quiet = cast(LogFormat, options["log_format"]), bool(options["quiet"])
    with exits_on_errors(ErrorSink(json=log_format == "json")) as errors:
        values, settings, warnings = _run_settings(ctx, inputs, job_path, options)
        errors.secret = settings.api_key
        for warning in warnings:  # said before anything is read or sent, as the run says its own warnings
            ConsoleOutput(log_format=log_format, quiet=quiet).on_event("warning", warning)
        if values["dry_run"]:
            from pipeline.dryrun import describe

            planned, written = runner.dry_run(settings)
            click.echo(describe(planned) + "".join(f"\n  plan {path}" for path in written))
            if log_format == "json":
                click.echo(json.dumps({"ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                       "event": "dry_run", **planned.as_dict(),
                                       "files": [str(path) for path in written]}), err=True)
            return
        show_bar = log_format == "text" and not quiet and sys.stderr.isatty()
        total = None
        if show_bar:
            from pipeline.sources import count_items

            total = count_items(settings.inputs, skip_dir=settings.out_dir)
        console = ConsoleOutput(log_format=log_format, quiet=quiet, progress=show_bar, total=total)
        try:
            outcome = runner.run(settings, on_result=console.on_result, on_event=console.on_event)
        finally:
            console.close()
    if outcome.stop_signal:
        interrupted = (f"interrupted by {signal.Signals(outcome.stop_signal).name}; the report is marked "
                       "interrupted and a rerun finishes the rest")
        errors.error("interrupted", f"audiosum: {interrupted}", interrupted, outcome.exit_code)
    if outcome.abort_reason:
        errors.error("stopped", f"audiosum: stopped: {outcome.abort_reason}", outcome.abort_reason, outcome.exit_code)
    click.echo(summary_line(outcome.totals, outcome.report_html))
    sys.exit(outcome.exit_code)


def _run_settings(ctx: click.Context, inputs: tuple[str, ...], job_path: Path | None,
                  options: dict[str, object]) -> tuple[dict[str, object], RunSettings, list[dict[str, str]]]:
    """Table defaults < job file < options given on the command line; then the settings built from them, and the
    warnings to say first: an old option name used, a job file's api_base that is not where the environment sends
    the key."""
    job_values: dict[str, object] = {}
    prices: dict[str, float] = {}
    warnings: list[dict[str, str]] = []
    if job_path is not None:
        from pipeline.jobs import load_job

        job = load_job(job_path)
        job_values, prices = dict(job.values), dict(job.prices)
        warnings += [{"kind": "renamed_option", "message": note} for note in job.notes]

    def given(key: str) -> bool:
        return ctx.get_parameter_source(key) not in (None, click.core.ParameterSource.DEFAULT,
                                                     click.core.ParameterSource.DEFAULT_MAP)

    options, given_as_old, notes = renamed_options(options, given)
    warnings += [{"kind": "renamed_option", "message": note} for note in notes]
    values = merge(options, lambda key: key in given_as_old or given(key), job_values)
    typed = ctx.get_parameter_source("api_base") == click.core.ParameterSource.COMMANDLINE
    values, environ = with_env_file(values, os.environ, api_base_on_command_line=typed)
    if not inputs:
        # A job's feeds are inputs like any other (URLs or local feed files).
        listed = [*cast("tuple[object, ...]", job_values.get("inputs", ())),
                  *cast("tuple[object, ...]", job_values.get("feeds", ()))]
        inputs = tuple(str(v) for v in listed)
    settings = build_settings(inputs, values, prices=prices, environ=environ)
    if job_path is not None and job_values.get("api_base"):
        warning = job_api_base_warning(job_path, str(job_values["api_base"]), settings, environ, api_base_typed=typed)
        if warning is not None:
            warnings.append({"kind": "job_api_base", "option": "api_base", "message": warning})
    return values, settings, warnings


@cli.command("report", short_help="Rebuild report.json and report.html from the state database.")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="OUT")
@click.option("--run", "run_id", default=None, help="Which run (default: the latest that was not a dry run).")
def report_command(out_dir: Path, run_id: str | None) -> None:
    """Re-render OUT/report.json and OUT/report.html from OUT/.audiosum/state.sqlite (e.g. after a crash)."""
    from pipeline import report
    from pipeline.state import locked_state

    with exits_on_errors(), locked_state(out_dir, must_exist=True) as state:
        row = state.run(run_id) if run_id else state.latest_real_run()
        if row is None:
            raise UsageError(f"no run {run_id or ''} recorded in {out_dir}".replace("  ", " "))
        _, html_path = report.write(out_dir, report.build(state, row["run_id"]), state)
    click.echo(f"audiosum: rebuilt the report of run {row['run_id']} ({row['status']}): {html_path}")


@cli.command("status", short_help="Show the last runs and document states of an output folder.")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="OUT")
@click.option("-n", "--runs", "limit", type=click.IntRange(1, 100), default=8, show_default=True,
              help="How many of the latest runs to show.")
def status_command(out_dir: Path, limit: int) -> None:
    """One screen on OUT: its last runs (newest first) and how its documents stand."""
    from pipeline.report.status import status_of

    with exits_on_errors():
        shown = status_of(out_dir, limit)
    click.echo(shown)


@cli.command("jobs", short_help="List the job files in jobs/.")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("jobs"))
def jobs_command(folder: Path) -> None:
    """List the job files in FOLDER (default: jobs/) with their descriptions; broken ones say why."""
    from pipeline.jobs import BrokenJob, list_jobs

    with exits_on_errors():
        found = list_jobs(folder)
    broken = False
    for job in found:
        if isinstance(job, BrokenJob):
            broken = True
            click.echo(f"{job.name:<24} BROKEN: {job.reason}")
        else:
            click.echo(f"{job.name:<24} {job.description or ''}")
            click.echo(f"{'':<24} audiosum run --job {job.path}")
    sys.exit(1 if broken else 0)


@cli.command("serve", short_help="Serve an OpenAI-compatible audio endpoint (offline).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. An address other machines can reach needs --api-key, --feed-only or --no-auth.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--engine", type=click.Choice(["local", "tone"]), default="local", show_default=True,
              help="local = extractive summary + neural voice; tone = instant tone audio for load tests.")
@click.option("--api-key", envvar="AUDIOSUM_SERVE_API_KEY", default=None,
              help="Require this bearer key on the API and /stats [env AUDIOSUM_SERVE_API_KEY]; without it any key "
                   "is accepted.")
@click.option("--no-auth", is_flag=True, help="Serve the API without a key even on a non-loopback --host.")
@click.option("--audio-ttl", type=click.IntRange(0, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds an answer's audio id stays usable in later turns.")
@click.option("--audio-memory", type=click.IntRange(0), default=10_000, show_default=True,
              help="How many audio ids are kept (the oldest are forgotten first; 0 forgets each at once).")
@click.option("--workers", type=click.IntRange(1, 64), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Worker processes that summarise, speak and hear (the event loop does none of it).")
@click.option("--rpm", type=click.IntRange(min=0), default=0, show_default=True,
              help="Requests per minute on /v1/chat/completions and /v1/audio/speech, refilled continuously "
                   "(0 = no limit).")
@click.option("--tpm", type=click.IntRange(min=0), default=0, show_default=True,
              help="Tokens per minute: the prompt estimate up front, the completion after answering (0 = no limit).")
@click.option("--burst", "burst_s", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              metavar="SECONDS", help="Bucket capacity in seconds of refill (at least 1 request / 1 token).")
@click.option("--latency", default="0", show_default=True, metavar="A-B",
              help="Extra wait before each 200 answer, uniform in A..B seconds (or a single number).")
@click.option("--faults", default="", metavar="SPEC",
              help="Injected faults, kind=probability,... (e.g. 500=0.1,reset=0.05); kinds: an HTTP status "
                   "(400, 401, 403, 404, 408, 409, 422, 500, 502, 503, 504) answered in OpenAI's error shape, "
                   "429, 429-no-retry-after, quota, reset, timeout, badjson, badaudio, truncated.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the fault draws and latencies.")
@click.option("--fault-retry-after", default="0.05-0.5", show_default=True, metavar="A-B",
              help="The wait an injected 429 fault announces in retry-after(-ms), uniform in A..B seconds.")
@click.option("--feed", "feed_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              metavar="OUT",
              help="Also serve OUT's podcast.xml and the files it links to at /feed/ (for podcast apps).")
@click.option("--feed-only", is_flag=True, help="Serve only the --feed files: no API, no /stats (safe on a LAN).")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="Also answer requests whose Host is NAME (repeatable; '*.example.com' or '*' allowed). "
                   "Loopback names and the bound address are always allowed.")
@click.option("--max-body-mb", type=click.IntRange(1, 4096), default=25, show_default=True,
              help="Largest request body accepted (413 above it), counted while it arrives.")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              metavar="SECONDS", help="Time allowed for a request's headers to arrive (then the connection is closed).")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              metavar="SECONDS", help="Time allowed for a request's body to arrive after its headers (408 after it).")
@click.option("--keep-alive", type=click.IntRange(1, 3600), default=5, show_default=True, metavar="SECONDS",
              help="An idle kept-alive connection is closed after this.")
@click.option("--max-connections", type=click.IntRange(min=0), default=0, show_default=True,
              help="Connections answered at once (more get 503); 0 = half the open-file limit, at most 1024.")
@click.option("--record", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              metavar="FILE", help="Append each API request to FILE as one JSON line {method, path, body} (the body "
                                   "as sent; never a header, so never the key).")
@click.option("--shutdown", "shutdown", multiple=True, metavar="MODEL=DATE",
              help="Announce a shutdown_date (YYYY-MM-DD) for MODEL in GET /v1/models (repeatable).")
@click.option("--batch-delay", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="SECONDS",
              help="A /v1/batches job is validating, then in_progress, for this long in all before its lines run.")
@click.option("--batch-expire", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="A batch not finished this long after its creation ends 'expired' (0 = only after 24 h).")
def serve_command(host: str, port: int, engine: Literal["local", "tone"], api_key: str | None, no_auth: bool,
                  audio_ttl: int, audio_memory: int, workers: int, rpm: int, tpm: int, burst_s: float,
                  latency: str, faults: str,
                  seed: int, fault_retry_after: str, feed_dir: Path | None, feed_only: bool,
                  allowed_host: tuple[str, ...], max_body_mb: int, header_timeout: float, body_timeout: float,
                  keep_alive: int, max_connections: int, record: Path | None, shutdown: tuple[str, ...],
                  batch_delay: float, batch_expire: float) -> None:
    """Serve OpenAI-compatible /v1/chat/completions, /v1/audio/speech, /v1/files and /v1/batches (offline).

    With --rpm/--tpm it rate-limits like the real service (429 with retry-after, x-ratelimit-* headers), and
    with --faults it injects errors, resets, stalls and broken answers; GET /stats counts every answer kind.
    """
    from pipeline.serve import app as server
    from pipeline.serve import batches as server_batches
    from pipeline.serve import faults as server_faults
    from pipeline.serve import guard as server_guard

    def parsed(parse, value: str, option: str):
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None

    api_key = api_key or None
    _check_exposure(host, api_key, no_auth, feed_dir, feed_only)
    limits = server_guard.GuardLimits(
        max_body_bytes=max_body_mb * server_guard.MB, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
        keep_alive_s=keep_alive, max_connections=max_connections)
    config = server.ServerConfig(
        host=host, port=port, engine=engine, api_key=api_key, audio_ttl_s=audio_ttl, audio_memory=audio_memory,
        workers=workers, rpm=rpm,
        tpm=tpm, burst_s=burst_s, seed=seed,
        latency_s=parsed(server_faults.parse_seconds_range, latency, "--latency"),
        faults=parsed(server_faults.parse_faults, faults, "--faults"),
        fault_retry_after_s=parsed(server_faults.parse_seconds_range, fault_retry_after, "--fault-retry-after"),
        feed_dir=feed_dir, feed_only=feed_only, limits=limits,
        allowed_hosts=parsed(lambda _: server_guard.allowed_hosts(host, allowed_host), "", "--allowed-host"),
        record=record, shutdowns=parsed(lambda _: server.parse_shutdowns(shutdown), "", "--shutdown"),
        batches=server_batches.BatchSettings(delay_s=batch_delay, expire_s=batch_expire),
    )
    with exits_on_errors():  # a port in use: one line, exit 2, said before anything claims to serve
        server.serve(config)


def _check_exposure(host: str, api_key: str | None, no_auth: bool, feed_dir: Path | None, feed_only: bool) -> None:
    """Refused before anything is bound: an API other machines can reach with no key, unless asked for in words."""
    from pipeline.serve.guard import is_loopback

    if feed_only and feed_dir is None:
        raise click.UsageError("--feed-only needs --feed OUT (the folder whose podcast to serve)")
    if no_auth and api_key:
        raise click.UsageError("--no-auth and --api-key contradict each other: give one")
    if is_loopback(host) or api_key or feed_only or no_auth:
        return
    raise click.UsageError(
        f"--host {host} can be reached from other machines, and the API has no key: give --api-key (or "
        "AUDIOSUM_SERVE_API_KEY), serve only the podcast with --feed-only, or pass --no-auth to serve the API to "
        "anyone who can reach it")


def main() -> None:
    cli(prog_name="audiosum")
