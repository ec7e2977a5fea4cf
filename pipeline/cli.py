"""The `audiosum` command: thin click commands that build settings and call the library.

Parses options and maps outcomes to exit codes; all behaviour lives in runner, server and friends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import httpx

from pipeline import __version__
from pipeline.errors import UsageError
from pipeline.models import DEFAULT_MODEL, DEFAULT_VOICE, DEFAULT_WORDS, OPENAI_VOICES, DocumentResult, RunSettings

DEFAULT_API_BASE = "https://api.openai.com/v1"
EXIT_USAGE = 2


def resolve_provider(choice: str, api_key: str | None, base_url: str | None) -> str:
    if choice == "auto":
        return "openai" if (api_key or base_url) else "local"
    if choice == "openai" and not (api_key or base_url):
        raise UsageError("--provider openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)")
    return choice


def check_base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageError(f"base URL {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"base URL {url!r} must be an http:// or https:// URL with a host")
    return url.rstrip("/")


def _print_result(quiet: bool):
    def show(result: DocumentResult) -> None:
        if result.status == "failed":
            click.echo(f"audiosum: failed {result.doc_id}: {result.reason}", err=True)
        elif not quiet:
            minutes, seconds = divmod(round(result.duration_s), 60)
            click.echo(f"  {result.status:<7} {result.doc_id}  ({minutes}:{seconds:02d} audio, "
                       f"{result.elapsed_s:.1f} s)", err=True)
    return show


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="audiosum")
def cli() -> None:
    """Turn documents into spoken summaries: a WAV and a transcript per document, and a run report.

    With no OPENAI_API_KEY it runs fully offline (extractive summary + a neural voice); with a key, or
    OPENAI_BASE_URL pointing at a compatible server, it asks a speaking model through the Chat
    Completions audio interface.
    """


@cli.command("run", short_help="Summarise documents into spoken WAVs, sidecars and a report.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: <id>.wav, <id>.json, report.json, report.html.")
@click.option("--provider", type=click.Choice(["auto", "openai", "local"]), default="auto", show_default=True,
              help="auto = openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the offline engine.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Model name sent to the API.")
@click.option("--voice", default=DEFAULT_VOICE, show_default=True,
              help=f"Voice ({', '.join(OPENAI_VOICES)}; other names are passed to the server as given).")
@click.option("--words", type=click.IntRange(10, 2000), default=DEFAULT_WORDS, show_default=True,
              help="Target length of each summary in words.")
@click.option("--concurrency", type=click.IntRange(1, 512), default=None,
              help="Documents in flight at once [default: 8 for openai, --workers for local].")
@click.option("--workers", type=click.IntRange(1, 64), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Offline engine: speech worker processes (the cores are shared between them).")
@click.option("--instructions", default=None,
              help="Replace the system prompt; '{words}' in it becomes the --words value.")
@click.option("--api-base", envvar="OPENAI_BASE_URL", default=None,
              help=f"API base URL [env OPENAI_BASE_URL; default {DEFAULT_API_BASE}].")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="Seconds to wait for one answer.")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures and the final summary.")
def run_command(inputs: tuple[str, ...], out_dir: Path, provider: str, model: str, voice: str, words: int,
                concurrency: int | None, workers: int, instructions: str | None, api_base: str | None,
                timeout_s: float, quiet: bool) -> None:
    """Summarise INPUT... (folders of .txt/.md, .jsonl/.csv manifests, or single files) into OUT."""
    from pipeline import runner

    api_key = os.environ.get("OPENAI_API_KEY") or None
    try:
        chosen = resolve_provider(provider, api_key, api_base)
        settings = RunSettings(
            inputs=inputs, out_dir=out_dir, provider=chosen, model=model, voice=voice, words=words,
            concurrency=concurrency or (8 if chosen == "openai" else workers), instructions=instructions,
            base_url=check_base_url(api_base or DEFAULT_API_BASE), api_key=api_key, timeout_s=timeout_s,
            local_workers=workers,
        )
        outcome = runner.run(settings, on_result=_print_result(quiet))
    except UsageError as exc:
        click.echo(f"audiosum: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    t = outcome.totals
    minutes = t["audio_seconds"] / 60
    click.echo(f"audiosum: {t['done']} done, {t['skipped']} skipped, {t['failed']} failed · "
               f"{minutes:.1f} audio min · {t['tokens_in']}/{t['tokens_out']} tokens in/out · "
               f"{t['wall_seconds']:.1f} s · report {outcome.report_html}")
    sys.exit(outcome.exit_code)


@cli.command("serve", short_help="Serve an OpenAI-compatible audio endpoint (offline).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--engine", type=click.Choice(["local", "tone"]), default="local", show_default=True,
              help="local = extractive summary + neural voice; tone = instant tone audio for load tests.")
@click.option("--api-key", envvar="AUDIOSUM_SERVE_API_KEY", default=None,
              help="Require this bearer key [env AUDIOSUM_SERVE_API_KEY]; without it any key is accepted.")
@click.option("--audio-ttl", type=click.IntRange(1, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds an answer's audio id stays usable in later turns.")
@click.option("--workers", type=click.IntRange(1, 64), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Speech worker processes for the local engine.")
def serve_command(host: str, port: int, engine: str, api_key: str | None, audio_ttl: int, workers: int) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions over the offline engine."""
    from pipeline import server

    server.serve(server.ServerConfig(host=host, port=port, engine=engine, api_key=api_key,
                                     audio_ttl_s=audio_ttl, workers=workers))


def main() -> None:
    cli(prog_name="audiosum")
