"""Parsing JSON that comes from outside (tool replies, hook replies, request bodies) with
limits on size and depth.

The standard library's parser recurses once per nesting level: a reply of 200,000 `[`
raises `RecursionError`, which no `except ValueError` catches, and skipped the bookkeeping
of the tool run that received it. pydantic-core's parser (jiter) bounds its own recursion
and refuses lone surrogates, invalid UTF-8, NaN and numbers of absurd length with a
`ValueError`; we add a size cap before parsing and a tighter depth limit after it.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from shared.limits import MAX_JSON_DEPTH


class UntrustedJsonError(ValueError):
    """The input was refused; `reason` is short, fixed and safe to show (it echoes nothing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in `data`, or `UntrustedJsonError` saying why not."""
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise UntrustedJsonError(f"larger than {max_bytes} bytes")
    try:
        value = pydantic_core.from_json(data, allow_inf_nan=False, cache_strings=False)
    except ValueError as error:
        if "recursion limit" in str(error):
            raise UntrustedJsonError(f"nested deeper than {max_depth} levels") from None
        raise UntrustedJsonError("not valid JSON") from None
    if depth_exceeds(value, max_depth):
        raise UntrustedJsonError(f"nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when objects and arrays in `value` nest deeper than `max_depth` (a scalar is
    depth 0, `[]` depth 1). Iterative, so any depth can be measured."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
