"""Output thinner than asked is "degraded", never plainly "done" (issue 27, item 1): a feed episode spoken from the
feed's own summary because its article could not be read is counted apart, shown with its reason on the console,
in the JSON log, the report (its own badge) and `status`, and made again by the next run, which reads the article
once it can (here: once --allow-private-links lets the fetcher reach the loopback site)."""

from __future__ import annotations

import json
from pathlib import Path

from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, api_env
from runs import child_env, run_cli

ARTICLE = ("<html><body><article><h1>Harbour bridge reopens</h1>"
           + "<p>The harbour bridge reopened on Saturday after eighteen months of repairs to its steel deck. "
             "Traffic engineers expect the morning queues on the coast road to shorten by a third. Cyclists get a "
             "separate lane for the first time, and buses return to their old route on Monday.</p>" * 4
           + "</article></body></html>").encode()


def _site() -> LoopbackSite:
    def answer(request: Request) -> Reply:
        if request.path == "/feed.xml":
            item = (f"<item><title>Harbour bridge reopens</title><link>{site.url('/bridge.html')}</link>"
                    "<guid>bridge-1</guid><description>The bridge is open again.</description></item>")
            return Reply(body=f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local news</title>'
                              f"<link>{site.base}</link><description>News</description>{item}</channel></rss>".encode(),
                         content_type="application/rss+xml")
        return Reply(body=ARTICLE, content_type="text/html; charset=utf-8")

    site = LoopbackSite(answer)
    return site


def test_a_feed_summary_in_place_of_the_article_is_degraded_shown_and_made_again(tone_server: RunningServer,
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _site() as site:
        feed = site.url("/feed.xml")
        first = run_cli("run", feed, "-o", str(out), "--captions", "off", env=api_env(tone_server))
        assert first.exit_code == 0, first.stderr  # degraded is not a failure (unless --strict)
        assert "audiosum: degraded " in first.stderr and "the article could not be read" in first.stderr
        assert "0 done, 1 degraded" in first.stdout
        report = json.loads((out / "report.json").read_text())
        (document,) = report["documents"]
        assert document["status"] == "degraded" and "feed's own text" in document["reason"]
        assert report["totals"]["degraded"] == 1 and report["totals"]["done"] == 0
        assert 'class="badge degraded"' in (out / "report.html").read_text()
        assert "1 degraded" in run_cli("status", str(out), env=child_env()).stdout
        assert (out / "podcast.xml").read_text().count("<item>") == 1  # still an episode: thinner, not missing

        # The next run makes it again (its cause may have passed), here with the JSON log.
        again = run_cli("run", feed, "-o", str(out), "--captions", "off", "--log-format", "json",
                        env=api_env(tone_server))
        events = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
        (event,) = [e for e in events if e["event"] == "document"]
        assert event["status"] == "degraded" and "could not be read" in event["reason"]

        # Once the article can be read, the episode is made from it: done.
        fixed = run_cli("run", feed, "-o", str(out), "--captions", "off", "--allow-private-links",
                        env=api_env(tone_server))
        assert fixed.exit_code == 0 and "1 done, 0 skipped" in fixed.stdout, fixed.stdout + fixed.stderr
        assert json.loads((out / "report.json").read_text())["documents"][0]["status"] == "done"
        # And a rerun now skips it as unchanged.
        assert "0 done, 1 skipped" in run_cli("run", feed, "-o", str(out), "--captions", "off",
                                               "--allow-private-links", env=api_env(tone_server)).stdout


def test_strict_makes_a_degraded_document_a_failure(tone_server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _site() as site:
        strict = run_cli("run", site.url("/feed.xml"), "-o", str(out), "--captions", "off", "--strict",
                         env=api_env(tone_server))
    assert strict.exit_code == 1, strict.stdout + strict.stderr
    (document,) = json.loads((out / "report.json").read_text())["documents"]
    assert document["status"] == "failed" and document["reason"].startswith("degraded (--strict): ")
    feed = out / "podcast.xml"
    assert not feed.exists() or "<item>" not in feed.read_text()  # a failure is not an episode
