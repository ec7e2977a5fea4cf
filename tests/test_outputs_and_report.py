"""Atomic, confined writes and a report page that escapes everything it shows."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline import outputs, report_html


def test_atomic_write_replaces_whole_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.wav"
    outputs.atomic_write(target, b"first")
    outputs.atomic_write(target, b"second")
    assert target.read_bytes() == b"second"

    with pytest.raises(TypeError):
        outputs.atomic_write(tmp_path / "b.wav", "not bytes")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


@pytest.mark.parametrize("name", ["../x.wav", "/etc/x", "a/b.wav", "..", "", "x\x00.wav"])
def test_confined_path_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        outputs.confined_path(tmp_path, name)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)


def test_report_page_escapes_document_and_server_values() -> None:
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    page = report_html.render({
        "run_id": hostile, "status": "finished", "started_at": "now",
        "settings": {"provider": hostile, "model": hostile, "voice": hostile},
        "totals": {"documents": 2, "done": 1, "failed": 1},
        "documents": [
            {"doc_id": "ok", "source": hostile, "status": "done", "title": hostile, "transcript": hostile,
             "wav_name": "ok.wav", "duration_s": 3.0,
             "meta": {"link": "javascript:alert(3)", "author": hostile, "published": hostile}},
            {"doc_id": "bad", "source": "x", "status": hostile, "title": None, "reason": hostile},
        ],
    })
    parser = _Elements()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert "onerror" not in parser.attributes
    assert parser.tags.count("audio") == 1
    assert "<link" not in page and "http" not in page and "javascript:" not in page
