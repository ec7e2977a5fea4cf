"""A folder of a .docx, an .epub and a Windows-1252 .txt read aloud offline: done, sidecars carrying the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from made_documents import CP1252_TEXT, make_cp1252, make_docx, make_epub
from runs import run_cli


@pytest.mark.slow  # the offline engine speaks three documents (~4 s with its start)
def test_folder_of_office_documents_runs_offline(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_docx(folder / "harbour.docx", title="The Harbour Book", author="Ada Lovelace")
    make_epub(folder / "crossing.epub", title="The Crossing", author="Mary Shelley")
    make_cp1252(folder / "old-notes.txt")
    out = tmp_path / "out"
    result = run_cli("run", str(folder), "-o", str(out), "--provider", "local")
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert {d["doc_id"]: d["status"] for d in report["documents"]} == {
        "harbour": "done", "crossing": "done", "old-notes": "done"}
    sidecars = {doc_id: json.loads((out / f"{doc_id}.json").read_text())
                for doc_id in ("harbour", "crossing", "old-notes")}
    assert sidecars["harbour"]["title"] == "The Harbour Book"
    assert {k: sidecars["harbour"]["meta"][k] for k in ("kind", "author", "language")} == {
        "kind": "docx", "author": "Ada Lovelace", "language": "en-GB"}
    assert sidecars["crossing"]["title"] == "The Crossing"
    assert {k: sidecars["crossing"]["meta"][k] for k in ("kind", "author", "language", "cover_media_type")} == {
        "kind": "epub", "author": "Mary Shelley", "language": "en", "cover_media_type": "image/png"}
    old = sidecars["old-notes"]["meta"]
    assert (old["encoding"], old["encoding_source"]) == ("windows-1252", "detected")
    assert float(old["encoding_confidence"]) >= 0.75
    # The words came through decoded, not as mojibake: the spoken summary holds the fixture's first sentence.
    assert CP1252_TEXT.split(" — ")[0] in sidecars["old-notes"]["transcript"]
    # Nothing was written for the inputs but the run's own files in OUT.
    assert sorted(p.name for p in folder.iterdir()) == ["crossing.epub", "harbour.docx", "old-notes.txt"]
