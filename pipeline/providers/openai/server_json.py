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


def nesting(data: bytes) -> int:
    """How deep the JSON in data nests (brackets inside strings not counted); linear in len(data), no recursion."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def parse(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in data; ValueError when it is not JSON (TooDeep when nested past max_depth)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # The common answer has few brackets (a base64 audio string has none): only then is the structure scanned.
    if raw.count(b"[") + raw.count(b"{") > max_depth and (depth := nesting(raw)) > max_depth:
        raise TooDeep(f"JSON nested {depth} deep (at most {max_depth})")
    try:
        return json.loads(raw)
    except RecursionError as exc:  # the scan above makes this unreachable; kept as the last line of defence
        raise TooDeep("JSON nested too deep to parse") from exc
