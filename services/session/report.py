"""`call.report`: the summary of a call, built from its events. Pure.

Built from the stream of the call's events rather than one worker's memory, so a call
that moved between workers still gets its whole transcript.
"""

from __future__ import annotations

from typing import Any

from shared.events import CallEvent, EventType


def build_report(events: list[CallEvent], end_reason: str) -> dict[str, Any]:
    transcript: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    attempts = 0
    started = next((e.ts for e in events if e.type == EventType.CALL_ACCEPTED), None)
    if started is None and events:
        started = events[0].ts
    ended = next((e.ts for e in reversed(events) if e.type == EventType.CALL_ENDED), None)
    if ended is None and events:
        ended = events[-1].ts
    for event in events:
        if event.type == EventType.TRANSCRIPT_CALLER:
            transcript.append({"speaker": "caller", "text": event.data.get("text", "")})
        elif event.type == EventType.TRANSCRIPT_AGENT:
            transcript.append({"speaker": "agent", "text": event.data.get("text", "")})
        elif event.type == EventType.TOOL_COMPLETED:
            tools.append(
                {
                    "name": event.data.get("name"),
                    "tool_call_id": event.data.get("tool_call_id"),
                    "ok": "error" not in event.data,
                    "duration_ms": event.data.get("duration_ms"),
                }
            )
        elif event.type == EventType.SESSION_ATTACHED:
            attempts = max(attempts, int(event.data.get("attempt", 1)))
    duration = (ended - started).total_seconds() if started and ended else 0.0
    return {
        "duration_s": round(duration, 3),
        "turns": sum(1 for line in transcript if line["speaker"] == "caller"),
        "transcript": transcript,
        "tools": tools,
        "end_reason": end_reason,
        "attempts": attempts,
    }
