"""Server JSON is parsed with a nesting limit: deep nesting is a ValueError (a broken answer), never a RecursionError;
brackets inside strings are text."""

from __future__ import annotations

import json

import pytest

from pipeline.providers.openai import server_json


@pytest.mark.parametrize("hostile", [b"[" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                     b"[" + b"[]," * 50 + b"[" * 65 + b"]" * 66])
def test_nesting_past_the_limit_is_a_value_error(hostile: bytes) -> None:
    with pytest.raises(ValueError, match="nested"):
        server_json.parse(hostile)


def test_brackets_inside_strings_do_not_count_and_escapes_are_honoured() -> None:
    text = '[[[[' * 100 + '\\"' + ']' * 30
    value = {"a": [text, {"b": "{{{{" * 100}], "c": 1}
    assert server_json.parse(json.dumps(value).encode()) == value


def test_wide_but_shallow_json_parses() -> None:
    value = [[i] for i in range(100_000)]
    assert server_json.parse(json.dumps(value)) == value


def test_exactly_at_the_limit_parses() -> None:
    deep = b"[" * server_json.MAX_DEPTH + b"]" * server_json.MAX_DEPTH
    assert server_json.nesting(deep) == server_json.MAX_DEPTH
    server_json.parse(deep)
    with pytest.raises(server_json.TooDeep):
        server_json.parse(b"[" + deep + b"]")


def test_the_scan_counts_objects_and_arrays_alike_across_blocks() -> None:
    """The depth is counted by the scan itself (not left to json's recursion), across the scan's blocks."""
    assert server_json.nesting(b'{"a":' * 100 + b"1" + b"}" * 100) == 100
    wide = b"[" + b"[]," * (server_json._BLOCK // 2) + b"[" * 70 + b"]" * 70 + b"]"
    assert server_json.nesting(wide) == 71
    assert server_json.nesting(b"{" * 10 + b"[" * 10 + b"]" * 10 + b"}" * 10) == 20
