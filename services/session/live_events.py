"""What a GPT-Live sideband event means for the call, and what the runner's commands are
on the wire. Pure: no sockets, no clock of its own (time comes in as an argument).

- Reflected audio (both directions, ~64 KB/s of base64 each) is recognised from the raw
  text and dropped before any JSON parsing (`is_reflected_audio`).
- Transcripts come as deltas with no turn boundaries: `Turns` (live_turns.py) groups
  them; a key press, a delegation or the session's end also ends the open turn.
- A tool call arrives through the Responses delegation: `response.event` envelopes whose
  nested `response.output_item.done` holds a `function_call` item; the nested lifecycle
  (`response.created` … `response.completed`) is the response the runner's turn-taking
  waits for before it sends outputs (`response.item.create`) and one `response.create`.
- `session.closed` says the call is over, with a reason.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from services.session.live_turns import Speaker, Turns
from services.session.sideband import (
    CallEnded,
    Command,
    Dtmf,
    GoneCause,
    ResponseDone,
    ResponseStarted,
    SessionConfigured,
    SessionField,
    SidebandError,
    SidebandEvent,
    ToolCallRequested,
    ToolOutput,
)

_AUDIO_MARKERS = ('"session.input_audio.append"', '"session.output_audio.delta"')
_EDGE = 120  # an audio event's `type` sits before or after its one big field

# session.closed reason → what the runner makes of it (services/session/sideband.py).
CLOSE_CAUSES: dict[str, GoneCause] = {
    "remote_hangup": "hangup",  # the caller hung up → caller_hangup
    "close_requested": "hangup",  # our (or the operator's) hang-up; the runner knows which
    "expired": "expired",  # the session's duration limit → max_duration
    "content": "error",  # a safety filter ended it
    "connection_lost": "error",  # the primary (phone) leg was lost
}
# Nested Responses events that end a delegated response, and how.
_RESPONSE_ENDS = {
    "response.completed": "completed",
    "response.failed": "failed",
    "response.incomplete": "incomplete",
}

# Event types counted by name in metrics; anything else counts as "other". Reflected audio
# is never counted (nor parsed).
KNOWN_TYPES = frozenset(
    {
        "session.started",
        "session.updated",
        "session.closed",
        "session.input_transcript.delta",
        "session.output_transcript.delta",
        "session.delegation.created",
        "session.instructions.appended",
        "session.thinking.appended",
        "session.commentary.appended",
        "session.usage.updated",
        "response.event",
        "transport.dtmf.received",
        "transport.dtmf.sent",
        "error",
        "info",
    }
)


def is_reflected_audio(raw: str | bytes) -> bool:
    """Reflected audio, told from its raw text without parsing it."""
    if isinstance(raw, bytes):
        head, tail = raw[:_EDGE].decode("latin-1"), raw[-_EDGE:].decode("latin-1")
    else:
        head, tail = raw[:_EDGE], raw[-_EDGE:]
    return any(marker in head or marker in tail for marker in _AUDIO_MARKERS)


class Seen:
    """The latest server event ids: an attach that replays a few earlier events (the SDK
    README speaks of "an attachment's short replay"; whether OpenAI does is unverified)
    must not make one transcript, key press or tool call count twice."""

    def __init__(self, size: int = 64) -> None:  # a short replay; ~5 KB a call
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def first_time(self, event: dict[str, Any]) -> bool:
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            return True
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(value: Any) -> dict[str, Any] | None:
    """OpenAI's error object, kept to its documented fields (no free-form payload)."""
    if not isinstance(value, dict):
        return None
    kept = {k: value.get(k) for k in ("type", "code", "message", "param") if k in value}
    return {k: (str(v)[:500] if v is not None else None) for k, v in kept.items()}


def translate(event: dict[str, Any], turns: Turns, now: float) -> list[SidebandEvent]:
    """What one Live server event means for the call (often nothing)."""
    kind = event.get("type")
    if kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        speaker: Speaker = "caller" if kind == "session.input_transcript.delta" else "agent"
        return turns.add(speaker, delta, _int(event.get("start_ms")), now)
    if kind == "session.delegation.created":
        return turns.flush()  # the model handed work off: what it said so far is a turn
    if kind == "response.event":
        return _delegated(event.get("event"))
    if kind == "transport.dtmf.received":  # the caller acted: the open turn is over
        digit = str(event.get("event", ""))[:8]
        return [*turns.flush(), Dtmf(digit)] if digit else []
    if kind in ("session.started", "session.updated"):
        session = event.get("session")
        return [_session(session if isinstance(session, dict) else {})]
    if kind == "session.closed":
        cause = CLOSE_CAUSES.get(str(event.get("reason")), "unknown")
        return [*turns.flush(), CallEnded(cause)]
    if kind == "error":
        error = event.get("error") or {}
        return [SidebandError(str(error.get("code") or ""), str(error.get("message") or ""))]
    return []


def _delegated(inner: Any) -> list[SidebandEvent]:
    """A nested Responses event of the delegation backend."""
    if not isinstance(inner, dict):
        return []
    kind = inner.get("type")
    if kind == "response.created":
        return [ResponseStarted()]
    if kind in _RESPONSE_ENDS:
        response = inner.get("response")
        if not isinstance(response, dict):
            response = {}
        details = response.get("incomplete_details") or {}
        return [
            ResponseDone(
                status=_RESPONSE_ENDS[kind],  # type: ignore[arg-type]
                reason=str(details["reason"]) if details.get("reason") else None,
                error=_error(response.get("error")),
            )
        ]
    if kind == "response.output_item.done":
        item = inner.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            return [
                ToolCallRequested(
                    tool_call_id=str(item.get("call_id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or "{}"),
                )
            ]
    return []


def _session(session: dict[str, Any]) -> SessionConfigured:
    """What a Live session says of the settings an agent asks for: its model and voice
    (its instructions grow with appends; it has no transcription or turn detection)."""
    reported: dict[SessionField, str | None] = {}
    if isinstance(session.get("model"), str):
        reported["model"] = session["model"]
    output = (
        (session.get("audio") or {}).get("output")
        if isinstance(session.get("audio"), dict)
        else None
    )
    if isinstance(output, dict) and isinstance(output.get("voice"), str):
        reported["voice"] = output["voice"]
    return SessionConfigured(reported)


def client_event(command: Command) -> dict[str, Any]:
    """The Live client event for a runner command.

    Speech is steered with `session.instructions.append` (Live's `response.create` only
    drives the delegation backend); a tool's output is a Responses input item; `continue`
    (after the outputs) is `response.create`.
    """
    if isinstance(command, ToolOutput):
        item = {"type": "function_call_output", "call_id": command.tool_call_id}
        return {"type": "response.item.create", "item": {**item, "output": command.output}}
    if command.instructions is None:
        return {"type": "response.create"}
    return {
        "type": "session.instructions.append",
        "content": command.instructions,
        "delegation_id": None,  # required, and null with Responses delegation
    }


def parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return event if isinstance(event, dict) else None
