"""What the console's calls table shows, folded from call events: pure, no I/O.

One `CallSummary` per call, updated event by event in `seq` order (a repeat or an older
event is ignored, so a replay from the stream and the live feed can overlap). A call leaves
the live table on its terminal event and joins the recent ones, where its report lands.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.events import CallEvent, EventType

RECENT_CALLS = 100
SNIPPET_CHARS = 80

_ENDING = {
    EventType.CALL_ENDED: "ended",
    EventType.CALL_REJECTED: "rejected",
    EventType.CALL_MISSED: "missed",
    EventType.CALL_FAILED: "failed",
    "call.superseded": "superseded",
}
_STATES = {
    EventType.CALL_RECEIVED: "ringing",
    "call.requested": "queued",
    "call.dialing": "dialing",
    "call.ringing": "ringing",
    "call.answered": "answered",
    EventType.CALL_ACCEPTED: "accepted",
    EventType.SESSION_ATTACHED: "live",
    EventType.SESSION_DETACHED: "moving",
}


@dataclass
class CallSummary:
    """One row of the console's tables (the browser receives it as JSON)."""

    call_id: str
    started: str = ""  # RFC 3339, the first event's time
    to: str = ""
    from_: str = ""
    agent: str = ""
    api: str = "realtime"
    direction: str = "inbound"
    worker: str = ""
    attempt: int = 0
    state: str = "ringing"
    live: bool = True
    seq: int = 0
    last_type: str = ""
    last_ts: str = ""
    snippet: str = ""
    ended: str = ""
    end_reason: str = ""
    report: dict[str, Any] | None = None
    targets: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["from"] = body.pop("from_")
        return body


def sip_user(uri: str | None) -> str:
    """`"Alex" <sip:+14155550123@host>;tag=x` → `+14155550123` (for display only)."""
    if not uri:
        return ""
    text = uri
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">")]
    text = text.split(";", 1)[0]
    user = text.split(":", 1)[-1].split("@", 1)[0]
    return user[:32]


def _header(headers: Any, name: str) -> str | None:
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name:
            return str(header.get("value", ""))
    return None


def _snippet(event: CallEvent) -> str:
    data = event.data
    kind = event.type
    if kind in (EventType.TRANSCRIPT_AGENT, EventType.TRANSCRIPT_CALLER):
        who = "agent" if kind == EventType.TRANSCRIPT_AGENT else "caller"
        text = f"{who}: {data.get('text', '')}"
    elif kind == EventType.TOOL_CALLED:
        text = f"tool {data.get('name', '')}"
    elif kind == EventType.DTMF:
        text = f"pressed {data.get('digit', '')}"
    elif kind in (EventType.CALL_TRANSFERRED, EventType.TRANSFER_FAILED):
        text = f"{kind.split('.')[-1]} {data.get('target', '')}"
    elif "reason" in data:
        text = str(data["reason"])
    else:
        return ""
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def apply(call: CallSummary, event: CallEvent) -> bool:
    """Fold one event into a call's summary; False if it was already seen."""
    if event.seq <= call.seq:
        return False
    data = event.data
    ts = event.ts.isoformat()
    call.seq, call.last_type, call.last_ts = event.seq, event.type, ts
    call.started = call.started or ts
    if "api" in data and isinstance(data["api"], str):
        call.api = data["api"]
    kind = event.type
    if kind == EventType.CALL_RECEIVED:
        headers = data.get("sip_headers")
        call.to = sip_user(_header(headers, "to")) or call.to
        call.from_ = sip_user(_header(headers, "from")) or call.from_
    elif kind == "call.requested":
        call.direction = "outbound"
        call.to = str(data.get("to", call.to))[:32]
        call.agent = str(data.get("agent", call.agent))
    elif kind == EventType.CALL_ACCEPTED:
        call.agent = str(data.get("agent", call.agent))
    elif kind == EventType.SESSION_ATTACHED:
        call.worker = str(data.get("worker", ""))
        call.attempt = int(data.get("attempt", call.attempt + 1) or 0)
    elif kind == EventType.CALL_REPORT:
        call.report = {
            k: data.get(k)
            for k in ("duration_s", "turns", "end_reason", "attempts", "api", "direction")
        }
        call.report["tools"] = len(data.get("tools") or [])
        call.end_reason = str(data.get("end_reason") or call.end_reason)
    if kind in _STATES and call.live:
        call.state = _STATES[kind]
    if kind in _ENDING and call.live:
        call.state, call.live, call.ended = _ENDING[kind], False, ts
        call.end_reason = str(data.get("reason", ""))
    call.snippet = _snippet(event) or call.snippet
    return True


class Board:
    """Every live call and the most recent ended ones, in memory."""

    def __init__(self, recent: int = RECENT_CALLS) -> None:
        self.live: dict[str, CallSummary] = {}
        self.recent: OrderedDict[str, CallSummary] = OrderedDict()
        self._recent_max = recent

    def apply(self, event: CallEvent) -> CallSummary | None:
        """Fold an event in; the changed summary, or None if nothing changed."""
        call = self.live.get(event.call_id) or self.recent.get(event.call_id)
        if call is None:
            call = self.live[event.call_id] = CallSummary(call_id=event.call_id)
        if not apply(call, event):
            return None
        if not call.live and event.call_id in self.live:
            del self.live[event.call_id]
            self.recent[event.call_id] = call
            while len(self.recent) > self._recent_max:
                self.recent.popitem(last=False)
        return call

    def forget_stale(self, now: datetime, max_age_s: float) -> list[str]:
        """Drop live calls silent for longer than any call lasts (their end was lost)."""
        stale = [
            call_id
            for call_id, call in self.live.items()
            if call.last_ts
            and (now - datetime.fromisoformat(call.last_ts)).total_seconds() > max_age_s
        ]
        for call_id in stale:
            del self.live[call_id]
        return stale

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in (*self.live.values(), *self.recent.values())]
