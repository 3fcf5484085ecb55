"""The call index: one summary per finished call, and the history query over it.

`GET /calls?since=…` must not read every event of a week of calls. The post-call service
writes a `CallSummary` to `calls.index.<call_id>` (stream `CALL_INDEX`, same retention as
the events) when a call finishes: its report, or a rejection, miss or failure before any
session. The history query reads that stream forward from `since` and filters. Summaries
are built from the call's own events (`summarize`, pure), so a re-index gives the same.

`since`/`until` select calls by when they started (their first event); the index is in
the order calls finished, so a scan starts at `since` and may run past `until` by the
longest call (`MAX_CALL_S`). The cursor is the index sequence to resume from (opaque).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from pydantic import BaseModel, Field

from shared.events import CallEvent, EventType
from shared.numbers import dialled_number, to_e164, user_part
from shared.postcall import INDEX_STREAM, INDEX_SUBJECT
from shared.scan import scan

# OpenAI ends a call after 60 minutes; a call started before `until` ends within this.
MAX_CALL_S = 2 * 3600.0
MAX_PAGE = 500
DEFAULT_PAGE = 50
# Calls indexed when they end: reports, and endings without a session (no report follows).
TERMINAL_TYPES = frozenset(
    {EventType.CALL_REPORT, EventType.CALL_REJECTED, EventType.CALL_MISSED, EventType.CALL_FAILED}
)
_OUTCOME = {
    EventType.CALL_REJECTED: "rejected",
    EventType.CALL_MISSED: "missed",
    EventType.CALL_FAILED: "failed",
}


class CallSummary(BaseModel):
    """One finished call, as `GET /calls?since=…` lists it."""

    call_id: str
    started_at: datetime
    ended_at: datetime
    agent: str | None = None
    to: str | None = None  # the dialled number (E.164)
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    end_reason: str
    duration_s: float = 0.0
    turns: int = 0
    api: str | None = None
    direction: str | None = None

    model_config = {"populate_by_name": True}

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _header(event: CallEvent, name: str) -> str | None:
    for header in event.data.get("sip_headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name.lower():
            return str(header.get("value", ""))
    return None


def _number(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    user = user_part(value) if ("@" in value or ":" in value) else value
    return to_e164(user) if user else None


def summarize(events: Sequence[CallEvent]) -> CallSummary | None:
    """The summary of a finished call from its events; None while it has not finished."""
    ordered = sorted(events, key=lambda e: e.seq)
    last = next((e for e in reversed(ordered) if e.type in TERMINAL_TYPES), None)
    if last is None or not ordered:
        return None
    first = ordered[0]
    agent = next((e.data["agent"] for e in ordered if isinstance(e.data.get("agent"), str)), None)
    report = last.data if last.type == EventType.CALL_REPORT else {}
    end_reason = str(report.get("end_reason") or _OUTCOME.get(EventType(last.type), "unknown"))
    to = dialled_number(_header(first, "To")) or _number(first.data.get("to"))
    caller = _number(_header(first, "From")) or _number(first.data.get("from"))
    return CallSummary(
        call_id=first.call_id,
        started_at=first.ts,
        ended_at=last.ts,
        agent=agent,
        to=to,
        from_=caller,
        end_reason=end_reason,
        duration_s=float(report.get("duration_s") or 0.0),
        turns=int(report.get("turns") or 0),
        api=first.data.get("api") or report.get("api"),
        direction=report.get("direction") or first.data.get("direction"),
    )


class HistoryQuery(BaseModel):
    """`GET /calls?since=&until=&agent=&number=&end_reason=&cursor=&limit=`."""

    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    number: str | None = None  # matches the dialled or the calling number
    end_reason: str | None = None
    cursor: int | None = Field(None, ge=1)
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)

    def matches(self, call: CallSummary) -> bool:
        """Pure: does this call belong to the answer?"""
        if self.since is not None and call.started_at < self.since:
            return False
        if self.until is not None and call.started_at >= self.until:
            return False
        if self.agent is not None and call.agent != self.agent:
            return False
        if self.end_reason is not None and call.end_reason != self.end_reason:
            return False
        if self.number is not None:
            wanted = to_e164(self.number) or self.number
            if wanted not in (call.to, call.from_):
                return False
        return True

    def past_the_end(self, indexed_at: datetime) -> bool:
        """A call indexed this late started after `until`: the scan can stop."""
        return self.until is not None and indexed_at > self.until + timedelta(seconds=MAX_CALL_S)


class HistoryPage(BaseModel):
    calls: list[dict[str, Any]]
    next: str | None


async def read_history(js: JetStreamContext, query: HistoryQuery) -> HistoryPage:
    """One page of matching calls, and the cursor of the next match (None: no more)."""
    calls: list[dict[str, Any]] = []
    start = {"start_seq": query.cursor} if query.cursor else {"start_time": query.since}
    async for msg in scan(js, INDEX_STREAM, f"{INDEX_SUBJECT}.*", **start):
        if query.past_the_end(msg.metadata.timestamp):
            break
        call = CallSummary.model_validate_json(msg.data)
        if not query.matches(call):
            continue
        if len(calls) == query.limit:
            return HistoryPage(calls=calls, next=str(msg.metadata.sequence.stream))
        calls.append(call.to_api())
    return HistoryPage(calls=calls, next=None)
