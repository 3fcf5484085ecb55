"""`RealtimeSideband`: the `Sideband` of OpenAI's Realtime API (`/v1/realtime?call_id=…`).

`translate` turns a Realtime server event into the runner's vocabulary (pure, unit-tested
in tests/services/session/test_realtime.py); `client_event` turns a runner command into a
Realtime client event. GA event names and their beta names are both understood.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, get_args

import openai
from openai.types.realtime import RealtimeClientEventParam
from websockets.exceptions import ConnectionClosed

from services.session.sideband import (
    AgentAudioCleared,
    AgentAudioStopped,
    AgentTranscript,
    CallerSpeechStarted,
    CallerTranscript,
    Command,
    Dtmf,
    IdlePrompted,
    ResponseConflict,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
    SessionConfigured,
    SessionExpiring,
    SessionField,
    SidebandError,
    SidebandEvent,
    ToolCallRequested,
    ToolOutput,
)
from services.session.sideband_socket import SidebandSocket
from shared import metrics
from shared.settings import Settings

log = logging.getLogger(__name__)

# GA name → beta name(s) that mean the same.
_ALIASES = {
    "response.output_audio_transcript.done": ("response.audio_transcript.done",),
    "response.output_audio_transcript.delta": ("response.audio_transcript.delta",),
    "response.output_audio.done": ("response.audio.done",),
    "response.output_text.done": ("response.text.done",),
    "conversation.item.added": ("conversation.item.created",),
}
_CANONICAL = {beta: ga for ga, betas in _ALIASES.items() for beta in betas}

# Event types counted by name in metrics; anything else counts as "other".
KNOWN_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "error",
        "input_audio_buffer.committed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "response.created",
        "response.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
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
RESPONSE_CONFLICT = "conversation_already_has_active_response"
SESSION_EXPIRED = "session_expired"


def canonical_type(event: dict[str, Any]) -> str:
    kind = str(event.get("type", ""))
    return _CANONICAL.get(kind, kind)


def _error(value: Any) -> dict[str, Any] | None:
    """OpenAI's error object, kept to its documented fields (no free-form payload)."""
    if not isinstance(value, dict):
        return None
    kept = {k: value.get(k) for k in ("type", "code", "message", "param") if k in value}
    return {k: (str(v)[:500] if v is not None else None) for k, v in kept.items()}


def translate(event: dict[str, Any]) -> SidebandEvent | None:
    """What a Realtime server event means for the call; None when nothing."""
    kind = canonical_type(event)
    if kind == "conversation.item.input_audio_transcription.completed":
        text = str(event.get("transcript") or "").strip()
        return CallerTranscript(text, event.get("item_id")) if text else None
    if kind == "conversation.item.input_audio_transcription.failed":
        return CallerTranscript(
            "", event.get("item_id"), failed=True, error=_error(event.get("error"))
        )
    if kind == "response.output_audio_transcript.done":
        text = str(event.get("transcript") or "").strip()
        return AgentTranscript(text, event.get("item_id")) if text else None
    if kind == "input_audio_buffer.dtmf_event_received":
        digit = str(event.get("event", ""))[:8]
        return Dtmf(digit) if digit else None
    if kind == "response.function_call_arguments.done":
        return ToolCallRequested(
            tool_call_id=str(event.get("call_id", "")),
            name=str(event.get("name", "")),
            arguments=str(event.get("arguments") or "{}"),
        )
    if kind == "response.created":
        return ResponseStarted()
    if kind == "response.done":
        return _response_done(event.get("response"))
    if kind == "output_audio_buffer.stopped":
        return AgentAudioStopped()
    if kind == "output_audio_buffer.cleared":
        return AgentAudioCleared()
    if kind == "input_audio_buffer.speech_started":
        return CallerSpeechStarted()
    if kind == "input_audio_buffer.timeout_triggered":
        return IdlePrompted()
    if kind in ("session.created", "session.updated"):
        session = event.get("session")
        return _session(session) if isinstance(session, dict) else None
    if kind == "error":
        error = event.get("error") or {}
        code = str(error.get("code") or "")
        if code == RESPONSE_CONFLICT:
            return ResponseConflict()
        if code == SESSION_EXPIRED:
            return SessionExpiring()
        return SidebandError(code=code, message=str(error.get("message") or ""))
    return None


def _response_done(response: Any) -> ResponseDone:
    if not isinstance(response, dict):
        return ResponseDone()
    status: ResponseStatus = "completed"
    if response.get("status") in get_args(ResponseStatus):
        status = response["status"]
    details = response.get("status_details") or {}
    return ResponseDone(
        status=status,
        reason=str(details["reason"]) if details.get("reason") else None,
        error=_error(details.get("error")),
    )


def _session(session: dict[str, Any]) -> SessionConfigured:
    """What a Realtime session says of the settings an agent asks for."""
    reported: dict[SessionField, str | None] = {}
    if isinstance(session.get("model"), str):
        reported["model"] = session["model"]
    if isinstance(session.get("instructions"), str):
        reported["instructions"] = session["instructions"]
    audio = session.get("audio")
    if isinstance(audio, dict):
        output, input_ = audio.get("output") or {}, audio.get("input") or {}
        if isinstance(output, dict) and isinstance(output.get("voice"), str):
            reported["voice"] = output["voice"]
        if isinstance(input_, dict):
            transcription = input_.get("transcription")
            reported["transcription"] = (
                str(transcription.get("model")) if isinstance(transcription, dict) else None
            )
            if "turn_detection" in input_:
                turn = input_["turn_detection"]
                reported["turn_detection"] = (
                    str(turn.get("type")) if isinstance(turn, dict) else None
                )
    return SessionConfigured(reported)


def client_event(command: Command) -> RealtimeClientEventParam:
    """The Realtime client event for a runner command, typed as the SDK's client event
    params (mypy checks the shapes; tests/test_openai_contract.py checks the values)."""
    if isinstance(command, ToolOutput):
        return {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": command.tool_call_id,
                "output": command.output,
            },
        }
    if command.instructions is None:
        return {"type": "response.create"}
    return {"type": "response.create", "response": {"instructions": command.instructions}}


class RealtimeSideband(SidebandSocket):
    """One Realtime call: its sideband WebSocket and its call-control REST endpoints."""

    api = "realtime"
    responses_conflict = True

    def __init__(self, call_id: str, settings: Settings, client: openai.AsyncOpenAI) -> None:
        # `websockets`, not the SDK's `client.realtime.connect(call_id=…)`. The SDK would
        # give typed sends and its own URL and headers, but: its reconnect must stay off
        # (`on_reconnecting=None`), or a worker whose lease lapsed could come back to a call
        # that is no longer its; a re-attach answering 404 (the call is over) must be told
        # from a network error, which the SDK surfaces as the same websockets exception;
        # and `recv()` builds an SDK model for every event (`construct_type_unchecked`)
        # where the worker reads a few fields of a few types, CPU the density benchmark
        # measures at thousands of calls. The SDK's types stay the authority all the same:
        # `client_event` is typed as its client event params, and the contract tests hold
        # both directions to them. Whether the SDK's connection costs density is measured
        # side by side once the machine is quiet (BENCHMARKS.md); until then, websockets.
        super().__init__(
            call_id,
            url=settings.sideband_url(call_id),
            api_key=settings.openai_api_key.get_secret_value(),
            control=client.realtime.calls,
        )

    def encode(self, command: Command) -> Mapping[str, Any]:
        return client_event(command)

    async def events(self) -> AsyncIterator[SidebandEvent]:
        ws = self._ws
        if ws is None:
            return
        try:
            async for raw in ws:
                try:
                    event = json.loads(raw)
                except (TypeError, ValueError, RecursionError):  # absurd nesting included
                    continue
                if not isinstance(event, dict):
                    continue
                kind = canonical_type(event)
                metrics.SIDEBAND_EVENTS.labels(kind if kind in KNOWN_TYPES else "other").inc()
                meaning = translate(event)
                if meaning is not None:
                    yield meaning
        except ConnectionClosed:
            return
