"""Every shell block of README.md and jobs/README.md that is marked runnable runs as written and exits as it says.

Each ```sh block is preceded by one marker line, and a block without one fails the test (so a new example is
classified when it is added, never left to rot):

- `<!-- runnable -->`: runs offline as written.
- `<!-- runnable: serve -->`: needs a key or a server. It runs against a session's `audiosum serve --engine tone` on
  loopback: OPENAI_BASE_URL and OPENAI_API_KEY point at it, a written `sk-...` becomes its key, a written
  `http://127.0.0.1:8000/v1` its URL, and a line that starts a server of its own (`audiosum serve ... &`) is dropped.
- `, exit N` after either: the block is expected to exit N instead of 0.
- `<!-- not runnable: WHY -->` (or README's `<!-- test-command -->`, the CI line itself): never run here.

A block runs in `bash -e` in a scratch folder holding copies of sample_inputs/ and jobs/ (never the checkout), with
`audiosum` on PATH as a shim that runs this interpreter's `-m pipeline` over the checkout's pipeline/.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers import SERVER_KEY, RunningServer
from runs import child_env

REPO = Path(__file__).resolve().parent.parent
DOCS = (REPO / "README.md", REPO / "jobs" / "README.md")
COPIED = ("sample_inputs", "jobs")  # what the README's commands read, relative to the repository root
MARKER = re.compile(r"<!-- (runnable(?::\s*(?P<how>[^>]*?))?|not runnable: (?P<why>[^>]+?)|test-command) -->")
WRITTEN_URL = "http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    marker: str | None  # the marker line's text, None when the block has none
    serve: bool
    exit_code: int
    runnable: bool
    script: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if line.strip() != "```sh":
                continue
            end = lines.index("```", index + 1)
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = MARKER.fullmatch(before.strip())
            how = [part.strip() for part in (marker.group("how") or "").split(",") if part.strip()] if marker else []
            exit_code = next((int(part.split()[1]) for part in how if part.startswith("exit ")), 0)
            runnable = bool(marker) and marker.group(1).startswith("runnable")
            found.append(Block(doc.relative_to(REPO).as_posix(), index + 1, before.strip() if marker else None,
                               "serve" in how, exit_code, runnable, "\n".join(lines[index + 1:end]) + "\n"))
    return found


BLOCKS = blocks()
RUNNABLE = [block for block in BLOCKS if block.runnable]


def test_every_shell_block_says_whether_it_runs() -> None:
    unmarked = [str(block) for block in BLOCKS if block.marker is None]
    assert not unmarked, ("a ```sh block needs a marker line before it (<!-- runnable -->, <!-- runnable: serve -->"
                          f" or <!-- not runnable: why -->): {unmarked}")
    assert RUNNABLE, "no README block is marked runnable"


def _scratch(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with copies of what the commands read, and a bin/ whose `audiosum` is this checkout's CLI."""
    work, bin_dir = tmp_path / "repo", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    for name in COPIED:
        shutil.copytree(REPO / name, work / name)
    shim = bin_dir / "audiosum"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m pipeline "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return work, bin_dir


def _served(script: str, server: RunningServer) -> str:
    key = server.key or SERVER_KEY
    kept = [line for line in script.splitlines() if not re.match(r"\s*audiosum serve\b.*&", line)]
    return "\n".join(kept).replace("sk-...", key).replace(WRITTEN_URL, server.base_url) + "\n"


@pytest.mark.slow  # the blocks narrate the sample set and hear its recording: tens of seconds in all
@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_a_runnable_readme_block_runs_as_written(block: Block, tone_server: RunningServer, tmp_path: Path) -> None:
    work, bin_dir = _scratch(tmp_path)
    env = child_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(tmp_path))
    script = block.script
    if block.serve:
        env.update(OPENAI_BASE_URL=tone_server.base_url, OPENAI_API_KEY=tone_server.key or SERVER_KEY)
        script = _served(script, tone_server)
    completed = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == block.exit_code, (
        f"{block} exited {completed.returncode}, expected {block.exit_code}\n--- script\n{script}"
        f"--- stdout\n{completed.stdout[-4000:]}--- stderr\n{completed.stderr[-4000:]}")
