"""JSON a client sent (a request body, one line of a batch input file), parsed only within bounds: at most MAX_TOKENS
values, keys and separators and MAX_DEPTH levels of nesting, both decided on the bytes before json.loads builds
anything.

Says why a text was refused and nothing more: each caller words its own error (a 400 for a body, the line's number
for a batch file). It never parses what is over a bound, and never relies on RecursionError to stop a deep one.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Strings, "[", "{", "," and ":" outside strings: about two per value. A 25 MB body of "1," or "[]," would be millions
# of Python objects (1.2 GB for four at once) and seconds of parsing; the largest request the shape limits allow
# needs well under 100,000.
MAX_TOKENS = 200_000
# A chat request nests about six levels (body, messages, a message, its content, a part, input_audio); a JSON schema
# in a request nests deeper, but far less than this. json.loads recurses once per level, so a line of 200,000 "["
# would otherwise end in RecursionError, or, in a thread with a small stack, worse.
MAX_DEPTH = 64
_OPENERS = (b"[", b"{")
_TOKEN_BYTES = (b'"', b"[", b"{", b",", b":")
_STRING = re.compile(rb'"[^"]*"')
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


class RefusedJson(ValueError):
    """Why a client's JSON was not parsed, as a clause ("it is not valid JSON"); `shape` when it was refused for its
    size or nesting rather than for its syntax."""

    def __init__(self, why: str, *, shape: bool) -> None:
        super().__init__(why)
        self.why, self.shape = why, shape


def loads(raw: bytes) -> Any:
    """The value `raw` holds, or RefusedJson. Meant to run in a thread for anything larger than a line."""
    if _tokens_over(raw, MAX_TOKENS):
        raise RefusedJson(f"it has more than {MAX_TOKENS} values, keys and separators", shape=True)
    if _nesting_over(raw, MAX_DEPTH):
        raise RefusedJson(f"it nests arrays and objects more than {MAX_DEPTH} levels deep", shape=True)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RefusedJson("it is not valid JSON", shape=False) from None


def _unescaped(raw: bytes) -> bytes:
    """`raw` without escaped backslashes, then without escaped quotes: backslashes appear only inside strings in valid
    JSON, so every quote left opens or closes a string."""
    return raw.replace(b"\\\\", b"").replace(b'\\"', b"")


def _tokens_over(raw: bytes, limit: int) -> bool:
    """Whether `raw` has more than `limit` JSON tokens (strings, and "[", "{", "," and ":" outside strings), decided
    without parsing: a count of those bytes anywhere bounds the answer from above, and only a text over it gets the
    exact count."""
    if sum(raw.count(byte) for byte in _TOKEN_BYTES) <= limit:
        return False
    plain = _unescaped(raw)
    strings = plain.count(b'"') // 2
    if strings > limit:
        return True
    outside = _STRING.sub(b"", plain)
    return strings + sum(outside.count(byte) for byte in _TOKEN_BYTES[1:]) > limit


def _nesting_over(raw: bytes, limit: int) -> bool:
    """True for valid JSON nested more than `limit` levels deep and for any text a parser would take more than twice
    that deep; False for valid JSON within `limit`. Decided on the brackets outside strings: each pass deletes every
    innermost "[]" pair, so a balanced text `limit` deep is empty after `limit` passes; no pass deletes unmatched
    brackets ("]"s, then "["s), and a parser descends one level for each unmatched "[" before it fails."""
    if sum(raw.count(byte) for byte in _OPENERS) <= limit:
        return False  # not enough openers anywhere to go that deep
    brackets = _STRING.sub(b"", _unescaped(raw)).translate(_BRACKETS_ONLY, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    else:
        if b"[]" in brackets:
            return True  # a pair still nested inside `limit` others
    return brackets.count(b"[") > limit
