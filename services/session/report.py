"""`call.report`: the summary of a call, built from its events. Pure.

Built from the stream of the call's events rather than one worker's memory, so a call
that moved between workers still gets its whole transcript.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from shared.events import CallEvent, EventType
from shared.live_agent import Api
from shared.outbound import Direction


class TranscriptLine(BaseModel):
    speaker: Literal["caller", "agent"]
    text: str
    # A caller turn OpenAI could not transcribe: its error instead of words.
    failed: bool | None = None
    error: dict[str, Any] | None = None


class ToolSummary(BaseModel):
    name: str | None
    tool_call_id: str | None
    ok: bool
    duration_ms: int | None


class CallReport(BaseModel):
    """`call.report`'s data (external contract)."""

    duration_s: float
    turns: int  # caller turns, failed transcriptions included
    transcript: list[TranscriptLine]
    tools: list[ToolSummary]
    end_reason: str
    attempts: int
    api: Api = "realtime"  # the API the call came through (from its first event)
    direction: Direction = "inbound"  # outbound: placed by the dialler (`call.requested`)
    tries: int = 1  # dials it took (`call.dialing` events); 1 for an inbound call

    def data(self) -> dict[str, Any]:
        """As published: a transcript line says `failed` (and OpenAI's error) only when so."""
        data = self.model_dump(mode="json")
        for line in data["transcript"]:
            if not line["failed"]:
                del line["failed"], line["error"]
        return data


def build_report(events: list[CallEvent], end_reason: str) -> CallReport:
    transcript: list[TranscriptLine] = []
    tools: list[ToolSummary] = []
    attempts = 0
    api: Api = "realtime"  # the first event says which API the call came through
    started = next((e.ts for e in events if e.type == EventType.CALL_ACCEPTED), None)
    if started is None and events:
        started = events[0].ts
    ended = next((e.ts for e in reversed(events) if e.type == EventType.CALL_ENDED), None)
    if ended is None and events:
        ended = events[-1].ts
    for event in events:
        if event.type == EventType.TRANSCRIPT_CALLER:
            line = TranscriptLine(speaker="caller", text=str(event.data.get("text", "")))
            if event.data.get("failed"):
                error = event.data.get("error")
                line.failed, line.error = True, error if isinstance(error, dict) else None
            transcript.append(line)
        elif event.type == EventType.TRANSCRIPT_AGENT:
            transcript.append(TranscriptLine(speaker="agent", text=str(event.data.get("text", ""))))
        elif event.type == EventType.TOOL_COMPLETED:
            duration = event.data.get("duration_ms")
            tools.append(
                ToolSummary(
                    name=event.data.get("name"),
                    tool_call_id=event.data.get("tool_call_id"),
                    ok="error" not in event.data,
                    duration_ms=duration if isinstance(duration, int) else None,
                )
            )
        elif event.type == EventType.SESSION_ATTACHED:
            attempts = max(attempts, int(event.data.get("attempt", 1)))
        elif event.type in (
            EventType.CALL_RECEIVED, EventType.CALL_ACCEPTED, EventType.CALL_REQUESTED,
        ):  # fmt: skip
            api = "live" if event.data.get("api") == "live" else api
    outbound = bool(events) and events[0].type == EventType.CALL_REQUESTED
    dials = sum(1 for event in events if event.type == EventType.CALL_DIALING)
    if started is None or outbound:
        answered = next((e.ts for e in events if e.type == EventType.CALL_ANSWERED), None)
        started = answered or started
    duration = (ended - started).total_seconds() if started and ended else 0.0
    return CallReport(
        duration_s=round(duration, 3),
        turns=sum(1 for line in transcript if line.speaker == "caller"),
        transcript=transcript,
        tools=tools,
        end_reason=end_reason,
        attempts=attempts,
        api=api,
        direction="outbound" if outbound else "inbound",
        tries=max(dials, 1) if outbound else 1,
    )
