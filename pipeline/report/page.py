"""report.html: one self-contained page (inline CSS, no scripts, no external assets) for a run.

Every value that came from a document or a server is escaped here and nowhere else.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from pipeline.audio.publish import is_audio_file
from pipeline.redact import visible


def escape(text: str) -> str:
    """HTML-escaped (quotes too, so the result is safe in attributes) with control characters made visible."""
    return html.escape(visible(text), quote=True)


_CSS = """
:root { color-scheme: light dark; --ok:#1a7f37; --bad:#cf222e; --skip:#6e7781; --line:#d0d7de; --soft:#f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --line:#30363d; --soft:#161b22; } }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 980px;
       padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
.meta { color: var(--skip); margin: 0 0 20px; font-size: 13px; }
.totals { display: grid; grid-template-columns: repeat(auto-fit, minmax(96px, 1fr)); gap: 10px; margin-bottom: 24px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--soft); }
.card b { display: block; font-size: 22px; }
.card span { font-size: 12px; color: var(--skip); text-transform: uppercase; letter-spacing: .04em; }
.doc { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 12px; }
.doc header { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.doc h2 { font-size: 16px; margin: 0; }
.doc .id { font-family: ui-monospace, monospace; font-size: 12px; color: var(--skip); }
.badge { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; color: #fff; }
.done { background: var(--ok); } .failed { background: var(--bad); } .skipped { background: var(--skip); }
.waiting { background: #9a6700; } .degraded { background: #b35900; }
.doc audio { width: 100%; margin: 10px 0 4px; }
.doc p.transcript { margin: 6px 0 0; }
.doc .followup { margin: 10px 0 0 14px; padding-left: 10px; border-left: 3px solid #d0d7de; }
.doc p.question { margin: 0 0 4px; font-weight: 600; }
.doc p.reason { color: var(--bad); margin: 8px 0 0; font-family: ui-monospace, monospace; font-size: 13px; }
.facts { font-size: 12px; color: var(--skip); }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 10px 2px 0; text-align: left; }
tr.chosen { font-weight: 600; }
nav { margin-bottom: 16px; font-size: 14px; }
"""


def _minutes(seconds: float) -> str:
    seconds = float(seconds or 0)
    return f"{int(seconds // 60)}:{int(round(seconds % 60)):02d}"


def _card(value: object, label: str) -> str:
    return f'<div class="card"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def _safe_link(url: str) -> str:
    """Only http(s) links become clickable; anything else (javascript:, data:) is shown as nothing."""
    return url if url.lower().startswith(("http://", "https://")) else "#"


def _document(doc: dict[str, Any]) -> str:
    status = str(doc.get("status") or "")
    status_class = status if status in ("done", "degraded", "failed", "skipped", "waiting") else "skipped"
    doc_id = str(doc.get("doc_id") or "")
    title = str(doc.get("title") or doc_id)
    id_label = f'<span class="id">{escape(doc_id)}</span>' if title != doc_id else ""
    parts = [
        f'<article class="doc" id="doc-{escape(doc_id)}">',
        f'<header><h2>{escape(title)}</h2><span class="badge {status_class}">{escape(status)}</span>'
        f'{id_label}</header>',
        f'<div class="facts">{escape(str(doc.get("source") or ""))}',
    ]
    meta = doc.get("meta") or {}
    for key in ("author", "published", "feed_title"):
        if meta.get(key):
            parts.append(f" · {escape(str(meta[key]))}")
    if meta.get("link"):
        parts.append(f' · <a href="{escape(_safe_link(str(meta["link"])))}" rel="noopener noreferrer">article</a>')
    if doc.get("duration_s"):
        parts.append(f' · {escape(_minutes(doc["duration_s"]))} of audio')
    if doc.get("elapsed_s"):
        parts.append(f' · made in {float(doc["elapsed_s"]):.1f} s')
    parts.append("</div>")
    parts.append(_player(str(doc.get("main_name") or "")))
    if doc.get("transcript"):
        parts.append(f'<p class="transcript">{escape(str(doc["transcript"]))}</p>')
    for number, answer in enumerate(doc.get("followups") or (), start=1):
        parts.append(_followup(number, answer))
    if doc.get("reason"):
        parts.append(f'<p class="reason">{escape(str(doc["reason"]))}</p>')
    parts.append("</article>")
    return "".join(parts)


def _player(name: str) -> str:
    """A player for an audio file in any --format; nothing for a text output (--output text) or no file."""
    return f'<audio controls preload="none" src="{escape(quote(name))}"></audio>' if is_audio_file(name) else ""


def _followup(number: int, answer: dict[str, Any]) -> str:
    """One follow-up question with its answer: a player for a spoken answer, the text either way."""
    player = _player(str(answer.get("file") or ""))
    return (f'<div class="followup"><p class="question">Q{number}. {escape(str(answer.get("question") or ""))}</p>'
            f'{player}<p class="transcript">{escape(str(answer.get("transcript") or ""))}</p></div>')


def render(report: dict[str, Any]) -> str:
    """The whole page for a report dict that carries its `documents` list (small runs, tests)."""
    documents = report.get("documents", [])
    failed = [d for d in documents if d.get("status") == "failed"]
    others = [d for d in documents if d.get("status") != "failed"]
    return "".join(render_parts(report, iter(failed), iter(others), len(failed)))


def render_parts(report: dict[str, Any], failed: Iterator[dict[str, Any]], others: Iterator[dict[str, Any]],
                 failed_count: int) -> Iterator[str]:
    """The page in pieces, documents streamed: failures first (they need attention), then the rest."""
    totals = report.get("totals", {})
    settings = report.get("settings", {})
    offline = settings.get("provider") == "local"
    engine = ("offline engine: TextRank summary, Piper joe voice, Whisper tiny.en for recordings" if offline else
              f'{settings.get("provider", "")} · {settings.get("model", "")} · voice {settings.get("voice", "")}')
    meta = (f'run {report.get("run_id", "")} · {report.get("status", "")} · '
            f'started {report.get("started_at", "")} · {engine} · {settings.get("words", "")} words')
    api_cards = [] if offline else [
        _card(f'{totals.get("tokens_in", 0)}/{totals.get("tokens_out", 0)}', "tokens in/out"),
        _card(totals.get("requests", 0), "requests"),
    ]
    cards = "".join([
        _card(totals.get("documents", 0), "documents"),
        _card(totals.get("done", 0), "done"),
        *([_card(totals["degraded"], "degraded")] if totals.get("degraded") else []),
        _card(totals.get("skipped", 0), "skipped"),
        _card(totals.get("failed", 0), "failed"),
        _card(_minutes(totals.get("audio_seconds", 0)), "audio (m:ss)"),
        *api_cards,
        _card(f'{float(totals.get("wall_seconds", 0)):.1f} s', "wall time"),
    ])
    nav = f'<nav><a href="#failed">{failed_count} failed</a></nav>' if failed_count else ""
    if report.get("dry_run"):
        plan = report["dry_run"]
        counts = ", ".join(f"{v} {k}" for k, v in sorted(plan.get("counts", {}).items()))
        nav += (f'<section class="card"><b>Dry run</b><p>{escape(counts)} · {escape(str(plan.get("requests")))} '
                f'requests · ~{escape(str(plan.get("input_tokens")))} input tokens · '
                f'~{escape(str(plan.get("audio_minutes")))} audio min · ~${escape(str(plan.get("cost_usd")))} · '
                f'{escape(str(plan.get("limits_note")))}</p>{_paths_table(plan.get("paths") or [])}</section>')
    if report.get("abort_reason"):
        nav += f'<p class="reason">{escape(str(report["abort_reason"]))}</p>'
    nav += "".join(f'<p class="reason">warning: {escape(str(w.get("message", "")))}</p>'
                   for w in report.get("warnings") or [])
    heading = "audiosum dry run: the plan, nothing sent" if report.get("dry_run") else "audiosum run report"
    if report.get("dry_run"):
        nav += '<p><a href="report.html">The last real run\'s report</a></p>'
    yield (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>audiosum report {escape(str(report.get('run_id', '')))}</title><style>{_CSS}</style></head><body>"
        f"<h1>{heading}</h1><p class=\"meta\">{escape(meta)}</p>"
        f"<section class=\"totals\">{cards}</section>{nav}"
    )
    if failed_count:
        yield '<h2 id="failed">Failed</h2>'
        for doc in failed:
            yield _document(doc)
    heading_done = False
    for doc in others:
        if not heading_done:
            yield "<h2>Summaries</h2>"
            heading_done = True
        yield _document(doc)
    yield "</body></html>\n"


def _paths_table(paths: list[dict[str, Any]]) -> str:
    """The dry run's three API paths side by side (the run's own path in bold)."""
    if not paths:
        return ""
    chosen = ' class="chosen"'
    rows = "".join(
        f'<tr{chosen if path.get("chosen") else ""}><td>{escape(str(path.get("strategy")))}</td>'
        f'<td>{escape(str(path.get("requests")))}</td><td>${escape(str(path.get("cost_usd")))}</td>'
        f'<td>{escape(str(path.get("cost_per_spoken_minute_usd") or "-"))}</td>'
        f'<td>{escape(str(path.get("minutes") if path.get("minutes") is not None else "?"))}</td>'
        f'<td>{escape(str(path.get("note")))}</td></tr>' for path in paths)
    return ("<table><tr><th>path</th><th>requests</th><th>cost</th><th>$ per spoken min</th><th>minutes</th>"
            f"<th>time</th></tr>{rows}</table>")
