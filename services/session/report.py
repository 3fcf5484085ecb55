"""`call.report`: the summary of a call, built from its events. Pure.

Built from the stream of the call's events rather than one worker's memory, so a call
that moved between workers still gets its whole transcript.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from services.session.history import as_int
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


# What `build_report` reads of each kind of event: the data keys it looks at (None: all).
_READ: dict[str, tuple[str, ...] | None] = {
    EventType.TRANSCRIPT_CALLER: None,
    EventType.TRANSCRIPT_AGENT: None,
    EventType.TOOL_COMPLETED: ("name", "tool_call_id", "duration_ms", "error"),
    EventType.SESSION_ATTACHED: ("attempt",),
    EventType.CALL_RECEIVED: ("api",),
    EventType.CALL_ACCEPTED: ("api",),
    EventType.CALL_REQUESTED: ("api",),
    EventType.CALL_DIALING: (),
    EventType.CALL_ANSWERED: (),
    EventType.CALL_ENDED: (),
    EventType.CALL_REPORT: (),
}


def as_read(event: CallEvent) -> CallEvent | None:
    """The part of `event` the report reads, or None when it reads nothing of it: what a
    worker keeps of the events it writes, to build the report without a read-back (a
    tool's result or a model's arguments can be large; a long call writes many events)."""
    if event.type not in _READ:
        return None
    keys = _READ[event.type]
    if keys is None:
        return event
    return event.model_copy(update={"data": {k: v for k, v in event.data.items() if k in keys}})


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
                    name=_text(event.data.get("name")),
                    tool_call_id=_text(event.data.get("tool_call_id")),
                    ok="error" not in event.data,
                    duration_ms=duration if isinstance(duration, int) else None,
                )
            )
        elif event.type == EventType.SESSION_ATTACHED:
            attempts = max(attempts, as_int(event.data.get("attempt"), 1))
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


def _text(value: object) -> str | None:
    """A string field of an event, or None when it is not a string (events are read back
    from a stream any writer can reach, and a report that cannot be built ends no call)."""
    return value if isinstance(value, str) else None
