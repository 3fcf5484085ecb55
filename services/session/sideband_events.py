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
class ResponseStarted:
    """A model response began: a `response.create` sent now would conflict."""


@dataclass(frozen=True)
class ServerError:
    code: str
    message: str

    @property
    def response_conflict(self) -> bool:
        """Our `response.create` was refused because another response is still running."""
        return self.code == "conversation_already_has_active_response"

    @property
    def session_expired(self) -> bool:
        """OpenAI's 60-minute session cap was reached: the call is about to end."""
        return self.code == "session_expired"


Meaning = (
    Publish | ToolCall | ResponseDone | ResponseStarted | AudioStopped | CallerSpoke | ServerError
) | None


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
        digit = str(event.get("event", ""))[:8]
        return Publish(EventType.DTMF, {"digit": digit}) if digit else None
    if kind == "response.function_call_arguments.done":
        return ToolCall(
            tool_call_id=str(event.get("call_id", "")),
            name=str(event.get("name", "")),
            arguments=str(event.get("arguments") or "{}"),
            response_id=event.get("response_id"),
        )
    if kind == "response.created":
        return ResponseStarted()
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


def response_create(instructions: str | None = None) -> dict[str, Any]:
    """Ask the model to speak now; with instructions, for this response only."""
    if instructions is None:
        return {"type": "response.create"}
    return {"type": "response.create", "response": {"instructions": instructions}}


def greeting_event(greeting: str) -> dict[str, Any]:
    """The model does not speak first on SIP: ask it to greet at once."""
    return response_create(f"Greet the caller: {greeting}")


def goodbye_event() -> dict[str, Any]:
    """The call reached its time limit: the agent says goodbye before we hang up."""
    return response_create(
        "Say goodbye to the caller: I'm sorry, we have reached the time limit for this call. "
        "Thank you for calling, goodbye!"
    )


def idle_prompt_event() -> dict[str, Any]:
    """The caller has been silent: ask once whether they are still there."""
    return response_create("Say to the caller: Are you still there?")


def tool_output_item(tool_call_id: str, output: str) -> dict[str, Any]:
    """The answer to one function call (sent after the response that asked is done)."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": tool_call_id, "output": output},
    }


def session_update(session: dict[str, Any]) -> dict[str, Any]:
    """A `session.update`: OpenAI's GA API refuses one without `session.type` "realtime"."""
    return {"type": "session.update", "session": {**session, "type": "realtime"}}
