"""`shared.untrusted.parse_json`: untrusted JSON within size and depth limits, or a clean
`UntrustedJsonError`; never `RecursionError` or anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.untrusted import UntrustedJsonError, depth_exceeds, parse_json


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_values_within_the_limits_are_parsed() -> None:
    assert parse_json(b'{"output": [1, "two", null]}', max_bytes=100) == {
        "output": [1, "two", None]
    }
    assert parse_json(nested(64), max_bytes=1000, max_depth=64) is not None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (nested(65), "nested deeper than 64 levels"),
        (nested(200_000), "nested deeper than 64 levels"),
        (b"x" * 101, "larger than 100 bytes"),
        (b"{", "not valid JSON"),
        (b'"\xff"', "not valid JSON"),
        (b'"\\ud800"', "not valid JSON"),  # a lone surrogate cannot be encoded again
        (b"NaN", "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),  # beyond Python's int digits limit
    ],
)
def test_inputs_outside_the_limits_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UntrustedJsonError) as refused:
        parse_json(data, max_bytes=100 if len(data) == 101 else 1_000_000)
    assert refused.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_bytes_parse_or_are_refused_cleanly(data: bytes) -> None:
    try:
        value = parse_json(data, max_bytes=300, max_depth=8)
    except UntrustedJsonError:
        return
    json.dumps(value)  # whatever is accepted can be written out again
    assert not depth_exceeds(value, 8)


def test_depth_is_measured_without_recursion() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert depth_exceeds(deep, 64)
    assert not depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert depth_exceeds({"a": [1, {"b": [2]}]}, 3)
