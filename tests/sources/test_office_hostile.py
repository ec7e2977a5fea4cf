"""Hostile office documents and books fail alone, each with its reason, in bounded time and memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import hostile_office
import pytest

SLOW = hostile_office.LARGE  # striprtf walks 18 MB of control words: ~2 s here
MAX_SECONDS_EACH = 10.0
MAX_RSS_MB = 250

# The child reads each file as a folder input would, and reports the reason, the seconds and its own VmHWM so far.
CHILD = """
import json, sys, time
from pathlib import Path
from pipeline import sources
from pipeline.models import RejectedDocument
def peak():
    return int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]) / 1024
for path in sorted(Path(sys.argv[1]).iterdir()):
    if path.name not in sys.argv[2:]:
        continue
    started = time.monotonic()
    item = sources.document_from_path(path)
    print(json.dumps({"name": path.name, "rejected": isinstance(item, RejectedDocument),
                      "reason": getattr(item, "reason", None), "seconds": time.monotonic() - started,
                      "peak_mb": peak()}), flush=True)
"""


def check_hostile(tmp_path: Path, names: set[str]) -> None:
    built = hostile_office.build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(built)
    expected = {name: reason for name, reason in built.items() if name in names}
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    completed = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), *expected], capture_output=True,
                               text=True, timeout=180, check=True)
    rows = {row["name"]: row for row in map(json.loads, completed.stdout.splitlines())}
    print("\n".join(f"{r['name']}: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB, {r['reason']}"
                    for r in rows.values()))
    assert sorted(rows) == sorted(expected)
    for name, reason in expected.items():
        row = rows[name]
        assert row["rejected"], name
        assert re.search(reason, row["reason"], re.I), (name, row["reason"])
        assert row["seconds"] < MAX_SECONDS_EACH, (name, row["seconds"])
    assert max(row["peak_mb"] for row in rows.values()) < MAX_RSS_MB
    # Reading wrote nothing beside the inputs and changed none of them.
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_each_hostile_file_fails_alone_fast_and_small(tmp_path: Path) -> None:
    check_hostile(tmp_path, set(hostile_office.EXPECTED) - SLOW)


@pytest.mark.slow
def test_rtf_of_18mb_of_control_words_fails_in_bounded_time(tmp_path: Path) -> None:
    check_hostile(tmp_path, set(SLOW))
