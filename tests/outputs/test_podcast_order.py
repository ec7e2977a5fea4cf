"""podcast.xml lists its episodes by publication date, newest first, as podcast apps show them, not in the order a
run happened to make them (issue 27, item 8)."""

from __future__ import annotations

import re
from pathlib import Path

from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, api_env
from runs import run_cli

DATES = {"first": "Thu, 01 Jan 2026 08:00:00 +0000", "third": "Sat, 03 Jan 2026 08:00:00 +0000",
         "second": "Fri, 02 Jan 2026 08:00:00 +0000"}  # the feed's own order: made in this order


def test_episodes_are_listed_by_publication_date_not_by_when_they_were_made(tone_server: RunningServer,
                                                                            tmp_path: Path) -> None:
    def answer(request: Request) -> Reply:
        if request.path == "/feed.xml":
            items = "".join(f"<item><title>Day {name}</title><guid>{name}</guid><pubDate>{date}</pubDate>"
                            f"<description>The ferry timetable for the {name} day of the year changes.</description>"
                            "</item>" for name, date in DATES.items())
            return Reply(body=f'<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>'
                              f"<link>{site.base}</link><description>d</description>{items}</channel></rss>".encode(),
                         content_type="application/rss+xml")
        return Reply(404, b"")

    with LoopbackSite(answer) as site:
        out = tmp_path / "out"
        result = run_cli("run", site.url("/feed.xml"), "-o", str(out), "--captions", "off", "--concurrency", "1",
                         "--format", "mp3", "--podcast-url", "https://pods.example.org/", env=api_env(tone_server))
    assert result.exit_code == 0, result.stderr
    titles = re.findall(r"<item>\s*<title>([^<]+)</title>", (out / "podcast.xml").read_text())
    assert titles == ["Day third", "Day second", "Day first"]
