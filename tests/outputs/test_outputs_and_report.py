"""Atomic, confined writes and a report page that escapes everything it shows."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline import outputs
from pipeline.errors import OutputClash
from pipeline.report import page as report_html


def _ours(name: str) -> bool:
    return True


def test_atomic_write_replaces_whole_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.wav"
    outputs.atomic_write(target, b"first", ours=_ours)
    outputs.atomic_write(target, b"second", ours=_ours)
    assert target.read_bytes() == b"second"

    with pytest.raises(TypeError):
        outputs.atomic_write(tmp_path / "b.wav", "not bytes", ours=_ours)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_atomic_write_never_replaces_a_file_that_is_not_ours(tmp_path: Path) -> None:
    users = tmp_path / "notes.txt"
    users.write_bytes(b"the user's own words")
    with pytest.raises(OutputClash):
        outputs.atomic_write(users, b"a transcript", ours=lambda name: False)
    assert users.read_bytes() == b"the user's own words"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no temp file left either
    # A file that appears while the new one is being written is not replaced either (checked again at the rename).
    late = tmp_path / "late.wav"
    with pytest.raises(OutputClash):
        with outputs.atomic_writer(late, ours=lambda name: False) as handle:
            handle.write(b"ours")
            late.write_bytes(b"theirs")
    assert late.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.wav", "notes.txt"]


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
             "main_name": "ok.wav", "duration_s": 3.0,
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
