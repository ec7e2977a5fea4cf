"""--executor ray where Ray cannot be imported: exit 2 before any document, naming the extra to install. Needs no
Ray (Ray is hidden from the import system here), so it runs in the default suite too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli


def test_executor_ray_without_ray_is_a_usage_error_naming_the_extra(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "note.txt").write_text("A short note. It says very little.")
    result = run_cli("run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--executor", "ray")
    assert result.exit_code == 2, result.stderr
    assert "pip install 'audiosum[ray]'" in result.stderr and "'.[ray]'" in result.stderr
    assert not list((tmp_path / "out").glob("*.wav"))


def test_executor_ray_with_the_api_provider_keeps_the_api_path_here_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from pipeline.models import RunSettings
    from pipeline.providers import make_provider

    monkeypatch.setitem(sys.modules, "ray", None)  # the API path never imports Ray
    events: list[tuple[str, dict]] = []
    settings = RunSettings(inputs=("d.txt",), out_dir=Path("out"), provider="openai", api_key="sk-test",
                           executor="ray")
    provider = make_provider(settings, on_event=lambda event, fields: events.append((event, fields)))
    asyncio.run(provider.aclose())
    assert provider.name == "openai"
    assert [fields["kind"] for event, fields in events if event == "warning"] == ["executor_ray_api_in_driver"]
