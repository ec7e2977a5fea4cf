"""`audiosum status`'s documents line counts every document state knows, failed ones included: a document that
failed before anything was sent (it could not be read) has its row too, and the next run tries it again."""

from __future__ import annotations

from pathlib import Path

from runs import child_env, run_cli


def test_a_document_that_could_not_be_read_is_counted_as_failed(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 64)  # not a PDF that opens
    result = run_cli("run", str(folder), "-o", str(out), env=child_env())
    assert result.exit_code == 1, result.stderr
    status = run_cli("status", str(out), env=child_env())
    assert status.exit_code == 0, status.stderr
    assert "documents: 1 failed" in status.stdout, status.stdout
    # Still failed on the next run (tried again, not skipped as unchanged), and still counted once.
    again = run_cli("run", str(folder), "-o", str(out), env=child_env())
    assert again.exit_code == 1 and "skipped" not in again.stdout.split("done")[0], again.stdout
    assert "documents: 1 failed" in run_cli("status", str(out), env=child_env()).stdout
