"""How `switchboard dev` shows a call's life in the terminal. Pure: event in, line out.

Everything in an event may come from a caller, the model or a tool service: each line is
escaped (`shared.text.for_terminal`) so no escape sequence, CR/LF, bidirectional override
or NUL reaches the terminal as anything but visible text.
"""

from __future__ import annotations

import collections
import json
from typing import Any

from shared.events import CallEvent, EventType
from shared.text import for_terminal

_WIDTH = 12


def short_call_id(call_id: str) -> str:
    return call_id.removeprefix("rtc_").removeprefix("live_")[:8]


def format_event(event: CallEvent) -> str | None:
    """One readable line for an event, or None for events not worth a line."""
    data = event.data
    kind = event.type
    if kind == EventType.CALL_RECEIVED:
        headers = {h["name"].lower(): h["value"] for h in data.get("sip_headers", [])}
        text = f"from {_user(headers.get('from'))} to {_user(headers.get('to'))}"
    elif kind == EventType.CALL_ACCEPTED:
        api = data.get("api")
        text = f"agent {data.get('agent', '?')}" + (" (GPT-Live)" if api == "live" else "")
    elif kind == EventType.CALL_REJECTED:
        text = f"{data.get('reason', '?')} (SIP {data.get('status_code', '?')})"
    elif kind in (EventType.CALL_MISSED, EventType.CALL_FAILED):
        text = str(data.get("reason", ""))
    elif kind == EventType.SESSION_ATTACHED:
        text = f"worker {data.get('worker')} attempt {data.get('attempt')}"
    elif kind == EventType.SESSION_DETACHED:
        text = str(data.get("reason", ""))
    elif kind == EventType.TRANSCRIPT_AGENT:
        return _line(event, "agent", f"“{data.get('text', '')}”")
    elif kind == EventType.TRANSCRIPT_CALLER:
        return _line(event, "caller", f"“{data.get('text', '')}”")
    elif kind == EventType.DTMF:
        text = f"pressed {data.get('digit')}"
    elif kind == EventType.TOOL_CALLED:
        text = f"{data.get('name')}({_compact(data.get('arguments', ''))})"
    elif kind == EventType.TOOL_COMPLETED:
        result = data.get("error") or data.get("output")
        text = f"{data.get('name', '')} → {_compact(result)} ({data.get('duration_ms', '?')} ms)"
    elif kind in (EventType.CALL_TRANSFERRED, EventType.TRANSFER_FAILED):
        text = f"{data.get('target')} {data.get('reason', '')}".strip()
    elif kind == EventType.CALL_ENDED:
        text = str(data.get("reason", ""))
    elif kind == EventType.CALL_REPORT:
        text = (
            f"{data.get('duration_s', 0):.1f} s, {data.get('turns', 0)} turns, "
            f"{len(data.get('tools', []))} tools, attempts {data.get('attempts', 1)}"
        )
    else:
        return None
    return _line(event, kind.split(".")[-1] if kind != "call.report" else "report", text)


def _line(event: CallEvent, label: str, text: str) -> str:
    stamp = event.ts.astimezone().strftime("%H:%M:%S")
    return for_terminal(f"{stamp}  {short_call_id(event.call_id)}  {label:<{_WIDTH}} {text}")


def _compact(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _user(uri: str | None) -> str:
    """`sip:+14155550123@host` → `+14155550123`."""
    if not uri:
        return "?"
    user = uri.strip("<>").split(":", 1)[-1].split("@", 1)[0]
    return user[:32]


TERMINAL_TYPES = frozenset(
    {
        EventType.CALL_REPORT,
        EventType.CALL_REJECTED,
        EventType.CALL_MISSED,
        EventType.CALL_FAILED,
    }
)


def is_success(event: CallEvent) -> bool:
    """Did a demo call end the way a demo call should?"""
    return event.type == EventType.CALL_REPORT and event.data.get("end_reason") in (
        "caller_hangup",
        "agent_hangup",
        "transferred",
    )


def outcome(event: CallEvent) -> str:
    """`ok` for a demo call that ended as it should, else why it did not."""
    if is_success(event):
        return "ok"
    return str(event.data.get("end_reason") or event.data.get("reason") or event.type)


def summary(finished: dict[str, str], expected: int) -> str:
    """`2 of 3 calls completed (1 no_capacity)`: how this run's calls ended."""
    counts = collections.Counter(finished.values())
    completed = counts.pop("ok", 0)
    unfinished = expected - len(finished)
    if unfinished > 0:
        counts["unfinished"] = unfinished
    others = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    return f"{completed} of {expected} calls completed" + (f" ({others})" if others else "")


def _outcome(event: CallEvent) -> str:
    if is_success(event):
        return "ok"
    data: dict[str, Any] = event.data
    return str(data.get("end_reason") or data.get("reason") or event.type)
