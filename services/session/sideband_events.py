"""What a sideband event means for the call. Pure: no sockets, no NATS.

OpenAI's GA event names and their beta names are both understood. The result is a small
typed value the call runner acts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.events import EventType

# GA name → beta name(s) that mean the same.
_ALIASES = {
    "response.output_audio_transcript.done": ("response.audio_transcript.done",),
    "response.output_audio_transcript.delta": ("response.audio_transcript.delta",),
    "response.output_audio.done": ("response.audio.done",),
    "response.output_text.done": ("response.text.done",),
    "conversation.item.added": ("conversation.item.created",),
}
_CANONICAL = {beta: ga for ga, betas in _ALIASES.items() for beta in betas}

# Event types we count by name in metrics; anything else counts as "other".
KNOWN_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "error",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.dtmf_event_received",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
    }
)


def canonical_type(event: dict[str, Any]) -> str:
    kind = str(event.get("type", ""))
    return _CANONICAL.get(kind, kind)


@dataclass(frozen=True)
class Publish:
    """Publish a call event."""

    type: EventType
    data: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    tool_call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    response_id: str | None


@dataclass(frozen=True)
class ResponseDone:
    response_id: str | None


@dataclass(frozen=True)
class AudioStopped:
    """The agent's audio finished playing to the caller."""


@dataclass(frozen=True)
class CallerSpoke:
    """Caller speech started (for idle timers)."""


@dataclass(frozen=True)
class ServerError:
    code: str
    message: str


Meaning = Publish | ToolCall | ResponseDone | AudioStopped | CallerSpoke | ServerError | None


def interpret(event: dict[str, Any]) -> Meaning:
    kind = canonical_type(event)
    if kind == "conversation.item.input_audio_transcription.completed":
        text = str(event.get("transcript") or "").strip()
        if not text:
            return None
        return Publish(EventType.TRANSCRIPT_CALLER, {"text": text, "item_id": event.get("item_id")})
    if kind == "response.output_audio_transcript.done":
        text = str(event.get("transcript") or "").strip()
        if not text:
            return None
        return Publish(EventType.TRANSCRIPT_AGENT, {"text": text, "item_id": event.get("item_id")})
    if kind == "input_audio_buffer.dtmf_event_received":
        return Publish(EventType.DTMF, {"digit": str(event.get("event", ""))[:8]})
    if kind == "response.function_call_arguments.done":
        return ToolCall(
            tool_call_id=str(event.get("call_id", "")),
            name=str(event.get("name", "")),
            arguments=str(event.get("arguments") or "{}"),
            response_id=event.get("response_id"),
        )
    if kind == "response.done":
        response = event.get("response") or {}
        return ResponseDone(response_id=response.get("id") if isinstance(response, dict) else None)
    if kind == "output_audio_buffer.stopped":
        return AudioStopped()
    if kind == "input_audio_buffer.speech_started":
        return CallerSpoke()
    if kind == "error":
        error = event.get("error") or {}
        return ServerError(code=str(error.get("code", "")), message=str(error.get("message", "")))
    return None


def greeting_event(greeting: str) -> dict[str, Any]:
    """The model does not speak first on SIP: ask it to greet at once."""
    return {
        "type": "response.create",
        "response": {"instructions": f"Greet the caller: {greeting}"},
    }
