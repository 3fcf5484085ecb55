"""Sizes of what crosses NATS, bounded below the server's limit with room for headers.

nats-server refuses a message whose headers and payload together exceed its `max_payload`
(1 MiB by default) and closes the connection that sent it; the client checks the payload
alone. So nothing a service writes (events, reports, KV records, tool requests) may come
near that limit: untrusted inputs are capped where they enter (a tool reply, a hook reply,
a request body), and what we build from them is checked, and cut down if need be, before it
is written.
"""

from __future__ import annotations

import json
from typing import Any

# nats-server's default `max_payload`; a server configured lower is read from its INFO.
NATS_MAX_PAYLOAD = 1024 * 1024
# Room for headers (Nats-Msg-Id, expected sequences, rollups) and the subject.
HEADERS_ROOM = 16 * 1024
# The largest payload any service writes: an event, a KV record, a job, a request.
MAX_MESSAGE_BYTES = NATS_MAX_PAYLOAD - HEADERS_ROOM
# Tool replies: the default cap (`TOOL_REPLY_MAX_BYTES`) and the most it may be set to.
# A reply is stored in its run record and in `tool.completed`, so it needs room beside it.
DEFAULT_TOOL_REPLY_MAX_BYTES = 256 * 1024
MAX_TOOL_REPLY_BYTES = 512 * 1024
# The model's arguments to a tool, sent on in the tool request and in `tool.called`.
MAX_TOOL_ARGUMENTS_BYTES = 64 * 1024
# Replies of the `agents.resolve` hook (they end up in the session job).
MAX_HOOK_REPLY_BYTES = 64 * 1024
# How deep untrusted JSON may nest (objects and arrays).
MAX_JSON_DEPTH = 64

TRUNCATED = "…"


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (what pydantic writes for our payloads)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def shrink(value: Any, budget: int) -> Any:
    """`value` cut down until its JSON is at most `budget` bytes. Pure.

    Long strings lose their end (marked with "…"), long lists their last items, and an
    object shrinks its largest members first, so what is small (names, ids, reasons) stays
    whole. Numbers, booleans and null are kept. Used as a last resort on payloads built
    from untrusted text (a transcript, a report), so that an event is stored cut rather
    than refused by the server.
    """
    size = json_size(value)
    if size <= budget:
        return value
    if isinstance(value, str):
        return _cut_text(value, budget)
    if isinstance(value, list):
        kept: list[Any] = []
        used = 2 + json_size(TRUNCATED) + 1
        for item in value:
            item_size = json_size(item) + 1
            if used + item_size > budget:
                break
            kept.append(item)
            used += item_size
        return [*kept, TRUNCATED] if json_size([*kept, TRUNCATED]) <= budget else []
    if isinstance(value, dict):
        result = dict(value)
        for key in sorted(result, key=lambda k: json_size(result[k]), reverse=True):
            excess = json_size(result) - budget
            if excess <= 0:
                break
            member = json_size(result[key])
            result[key] = shrink(result[key], max(0, member - excess))
        if json_size(result) > budget:  # too many small members: keep what fits
            kept_members: dict[str, Any] = {}
            for key, member_value in result.items():
                if json_size({**kept_members, key: member_value}) > budget:
                    break
                kept_members[key] = member_value
            return kept_members
        return result
    return value


def _cut_text(text: str, budget: int) -> str:
    """The longest prefix of `text` (plus "…") whose JSON fits `budget` bytes."""
    low, high = 0, len(text)
    while low < high:  # binary search on characters: escapes make bytes ≠ characters
        middle = (low + high + 1) // 2
        if json_size(text[:middle] + TRUNCATED) <= budget:
            low = middle
        else:
            high = middle - 1
    cut = text[:low] + TRUNCATED
    return cut if json_size(cut) <= budget else ""
