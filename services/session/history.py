"""What a call's own events say about its past, for a worker taking it over. Pure.

A worker that takes over a call (after a crash, a hand-off or a stale owner) must not
greet again and must number its ownership after the last one. Neither can come from the
JetStream delivery count: a `nak` to wait for a lease, or a hand-off, also counts as a
delivery. The call's events are durable and shared by every worker, so they decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.events import CallEvent, EventType


@dataclass(frozen=True)
class OpenTool:
    """A tool call the model made that no owner answered (`tool.called`, no `tool.completed`)."""

    name: str
    tool_call_id: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class CallHistory:
    attempts: int = 0  # ownerships that attached so far (the next one is attempts + 1)
    greeted: bool = False  # a greeting was sent by an earlier owner
    ended_reason: str | None = None  # `call.ended` already published (by a dead owner)
    # Tool calls an earlier owner started and never completed: the model still waits.
    open_tools: tuple[OpenTool, ...] = ()

    @property
    def next_attempt(self) -> int:
        return self.attempts + 1

    @classmethod
    def from_events(cls, events: list[CallEvent]) -> CallHistory:
        attempts = 0
        greeted = False
        ended_reason: str | None = None
        called: dict[str, OpenTool] = {}
        completed: set[str] = set()
        for event in events:
            if event.type == EventType.SESSION_ATTACHED:
                attempts = max(attempts, as_int(event.data.get("attempt"), 1))
                # Workers publish `greeted` after the greeting went out; an attach event
                # without the field (an older worker) greeted on its first attempt.
                greeted = greeted or bool(event.data.get("greeted", True))
            elif event.type == EventType.CALL_ENDED:
                ended_reason = str(event.data.get("reason", "error"))
            elif event.type == EventType.TOOL_CALLED:
                tool_call_id = str(event.data.get("tool_call_id") or "")
                if tool_call_id and tool_call_id not in called:
                    arguments = event.data.get("arguments", {})
                    if not isinstance(arguments, str):
                        arguments = json.dumps(arguments)
                    name = str(event.data.get("name") or "")
                    called[tool_call_id] = OpenTool(name, tool_call_id, arguments)
            elif event.type == EventType.TOOL_COMPLETED:
                completed.add(str(event.data.get("tool_call_id") or ""))
        open_tools = tuple(t for i, t in called.items() if i not in completed)
        return cls(attempts, greeted, ended_reason, open_tools)


def as_int(value: object, default: int) -> int:
    """An event's number as written, or `default` when it is not one (events are read back
    from a stream any writer can reach)."""
    if not isinstance(value, int | float | str):
        return default
    try:
        return int(value)
    except (ValueError, OverflowError):
        return default
