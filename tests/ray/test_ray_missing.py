"""--executor ray where Ray cannot be imported: exit 2 before any document, naming the extra to install. Needs no
Ray (Ray is hidden from the import system here), so it runs in the default suite too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from peers import RunningServer, api_env
from runs import run_cli


def test_executor_ray_without_ray_is_a_usage_error_naming_the_extra(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "note.txt").write_text("A short note. It says very little.")
    result = run_cli("run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--executor", "ray")
    assert result.exit_code == 2, result.stderr
    assert "pip install 'audiosum[ray]'" in result.stderr and "'.[ray]'" in result.stderr
    assert not list((tmp_path / "out").glob("*.wav"))


def test_an_api_run_on_ray_without_ray_stops_before_any_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  recording_server: RunningServer) -> None:
    """--provider openai --executor ray: the requests go from this process, but the answers' publishing and hearing
    need the pool, so a missing Ray is exit 2 too, after the model check and before any document is sent."""
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "note.txt").write_text("A short note. It says very little.")
    since = len(recording_server.recorded())
    result = run_cli("run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--executor", "ray",
                     env=api_env(recording_server))
    assert result.exit_code == 2, result.stderr
    assert "pip install 'audiosum[ray]'" in result.stderr
    paths = [r["path"] for r in recording_server.recorded()[since:]]
    assert paths and all(path.startswith("/v1/models/") for path in paths), paths  # the model check, nothing sent
