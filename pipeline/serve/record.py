"""`audiosum serve --record FILE`: each API request as one JSON line, appended to FILE as the client sent it.

Writes the method, path and body only, never a header (they carry the key); it never reads or answers a request.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path


class RequestRecorder:
    """`serve --record FILE`: each API request as one JSON line {"method", "path", "body"} appended to FILE, the body
    as the client sent it (UTF-8 text; bytes that are not UTF-8 are replaced). Headers are never written: they carry
    the key. Writes run in a thread, one line at a time, so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    async def record(self, method: str, path: str, raw: bytes) -> None:
        line = json.dumps({"method": method, "path": path, "body": raw.decode("utf-8", "replace")},
                          separators=(",", ":")) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
