"""JSON a server sent, parsed with a nesting limit: a hostile answer of 200,000 `[` is a broken answer (ValueError),
never a RecursionError that escapes the caller's handling.

Pure bytes to objects; knows no HTTP and keeps no fields (the callers keep only what the API defines).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# The API's deepest answer (a chat completion's choices[0].message.audio, a batch line's response.body.choices...)
# nests under 10 levels; 64 leaves room for any compatible server's extras and none for a nesting attack.
MAX_DEPTH = 64
# A JSON string (with its escapes): what brackets inside it say is text, not structure.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class TooDeep(ValueError):
    """JSON nested deeper than MAX_DEPTH (a ValueError, so every 'not JSON' handler also catches it)."""


_BLOCK = 1 << 20  # brackets scanned a block at a time: the working arrays stay a few MB whatever the answer's size


def nesting(data: bytes, stop_past: int | None = None) -> int:
    """How deep the JSON in data nests (brackets inside strings not counted); linear in len(data), no recursion,
    memory about twice the data. stop_past: return as soon as the depth passes it (the caller refuses it anyway)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for start in range(0, len(brackets), _BLOCK):
        codes = np.frombuffer(brackets, dtype=np.uint8, count=min(_BLOCK, len(brackets) - start), offset=start)
        opening = (codes == ord("[")) | (codes == ord("{"))
        running = np.cumsum(np.where(opening, 1, -1).astype(np.int32), dtype=np.int64) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
        if stop_past is not None and deepest > stop_past:
            break
    return deepest


def parse(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in data; ValueError when it is not JSON (TooDeep when nested past max_depth)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # The common answer has few brackets (a base64 audio string has none): only then is the structure scanned.
    if raw.count(b"[") + raw.count(b"{") > max_depth and (depth := nesting(raw, max_depth)) > max_depth:
        raise TooDeep(f"JSON nested more than {max_depth} deep ({depth} at least)")
    try:
        return json.loads(raw)
    except RecursionError as exc:  # the scan above makes this unreachable; kept as the last line of defence
        raise TooDeep("JSON nested too deep to parse") from exc
