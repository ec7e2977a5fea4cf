"""The Ray the cluster recipe needs: token auth (RAY_AUTH_MODE=token) exists from Ray 2.52, so the ray extra asks for
it, --executor ray refuses an older Ray, and README's recipe keeps the token off command lines and says the
connections are not encrypted unless Ray's TLS is on. Needs no Ray: a stand-in module plays an old one."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import pytest
from runs import REPO, run_cli

from pipeline.errors import UsageError
from pipeline.executors import ray_pool


def _extra_floor() -> tuple[int, int]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (requirement,) = extras["ray"]
    found = re.fullmatch(r"ray\[data\]>=(\d+)\.(\d+)(?:\.\d+)?", requirement)
    assert found, requirement
    return int(found[1]), int(found[2])


def _cluster_recipe() -> str:
    """The `sh` block under README's "Beyond one machine: Ray" that starts the nodes."""
    section = (REPO / "README.md").read_text().split("## Beyond one machine: Ray", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    (recipe,) = [block for block in blocks if "ray start" in block]
    return recipe


def test_the_ray_extra_asks_for_the_first_ray_with_token_auth() -> None:
    assert _extra_floor() >= (2, 52)
    assert _extra_floor() == ray_pool.RAY_FLOOR  # one floor: what pip installs is what the run accepts


def _stand_in_ray(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    module = types.ModuleType("ray")
    module.__version__ = version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", module)


@pytest.mark.parametrize("version, accepted", [("2.40.0", False), ("2.51.2", False), ("1.13.0", False),
                                               ("2.52.0", True), ("2.60.0", True), ("3.0.0.dev0", True)])
def test_an_older_ray_is_refused_by_its_version(monkeypatch: pytest.MonkeyPatch, version: str, accepted: bool) -> None:
    _stand_in_ray(monkeypatch, version)
    if accepted:
        assert ray_pool._import_ray() is sys.modules["ray"]
        return
    with pytest.raises(UsageError) as caught:
        ray_pool._import_ray()
    assert f"Ray {version}" in str(caught.value) and "2.52 or later" in str(caught.value)
    assert "pip install 'audiosum[ray]'" in str(caught.value)


def test_executor_ray_with_an_older_ray_is_a_usage_error_before_any_document(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_ray(monkeypatch, "2.51.0")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "note.txt").write_text("A short note. It says very little.")
    result = run_cli("run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--executor", "ray")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr and "Ray 2.51.0" in result.stderr and "2.52 or later" in result.stderr
    assert not list((tmp_path / "out").glob("*.wav"))


def test_the_cluster_recipe_keeps_the_token_off_command_lines() -> None:
    recipe = _cluster_recipe()
    assert "export RAY_AUTH_MODE=token" in recipe
    assert "RAY_AUTH_TOKEN=" not in recipe and "<token>" not in recipe  # no token typed or passed as an argument
    assert "ray get-auth-token --generate >/dev/null" in recipe  # it prints the token; the file is what is used
    assert "chmod 600 ~/.ray/auth_token" in recipe  # Ray 2.52 writes it with the umask (often 0644)
    assert "0.0.0.0" not in recipe  # no dashboard open to the network


def test_the_ray_section_says_the_connections_are_not_encrypted_without_tls() -> None:
    section = (REPO / "README.md").read_text().split("## Beyond one machine: Ray", 1)[1].split("\n## ", 1)[0]
    prose = " ".join(section.split())
    assert "not encrypted" in prose and "private network" in prose
    for name in ("RAY_USE_TLS=1", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT", "RAY_AUTH_TOKEN_PATH",
                 "~/.ray/auth_token"):
        assert name in prose, name
