"""The Realtime adapter's translation: OpenAI's server events into the runner's vocabulary,
and the runner's commands into Realtime client events. Pure."""

from __future__ import annotations

from services.session.realtime import canonical_type, client_event, translate
from services.session.sideband import (
    AgentAudioCleared,
    AgentAudioStopped,
    AgentTranscript,
    CallerSpeechStarted,
    CallerTranscript,
    Dtmf,
    IdlePrompted,
    ResponseConflict,
    ResponseDone,
    ResponseStarted,
    SessionConfigured,
    SessionExpiring,
    SidebandError,
    ToolCallRequested,
    ToolOutput,
)
from services.session.turns import CONTINUE, greeting


def test_ga_and_beta_transcript_names_mean_the_same() -> None:
    for kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
        meaning = translate({"type": kind, "transcript": " Hello ", "item_id": "item_1"})
        assert meaning == AgentTranscript("Hello", "item_1")
    assert canonical_type({"type": "conversation.item.created"}) == "conversation.item.added"


def test_caller_transcript_dtmf_and_empty_ones() -> None:
    caller = translate(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "transcript": "Hi",
            "item_id": "i",
        }
    )
    assert caller == CallerTranscript("Hi", "i")
    empty = {"type": "conversation.item.input_audio_transcription.completed", "transcript": ""}
    assert translate(empty) is None
    assert translate({"type": "input_audio_buffer.dtmf_event_received", "event": "9"}) == Dtmf("9")
    assert translate({"type": "input_audio_buffer.dtmf_event_received"}) is None


def test_a_failed_transcription_keeps_openais_error() -> None:
    error = {"type": "transcription_error", "code": "audio_unintelligible", "message": "x"}
    failed = translate(
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "item_id": "i",
            "content_index": 0,
            "error": error,
        }
    )
    assert failed == CallerTranscript("", "i", failed=True, error=error)


def test_tool_calls_responses_audio_and_errors() -> None:
    call = translate(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "call_1",
            "name": "end_call",
            "arguments": "{}",
            "response_id": "resp_1",
        }
    )
    assert call == ToolCallRequested("call_1", "end_call", "{}")
    assert translate({"type": "response.created"}) == ResponseStarted()
    assert translate({"type": "response.done", "response": {"id": "r"}}) == ResponseDone()
    failed = translate(
        {
            "type": "response.done",
            "response": {
                "status": "failed",
                "status_details": {"type": "failed", "error": {"type": "server_error"}},
            },
        }
    )
    assert failed == ResponseDone("failed", None, {"type": "server_error"})
    assert translate({"type": "output_audio_buffer.stopped"}) == AgentAudioStopped()
    assert translate({"type": "output_audio_buffer.cleared"}) == AgentAudioCleared()
    assert translate({"type": "input_audio_buffer.speech_started"}) == CallerSpeechStarted()
    assert translate({"type": "input_audio_buffer.timeout_triggered"}) == IdlePrompted()
    conflict = {"type": "error", "error": {"code": "conversation_already_has_active_response"}}
    assert translate(conflict) == ResponseConflict()
    expired = {"type": "error", "error": {"code": "session_expired", "message": "x"}}
    assert translate(expired) == SessionExpiring()
    other = translate({"type": "error", "error": {"code": "bad", "message": "m"}})
    assert other == SidebandError("bad", "m")
    session = {
        "type": "realtime",
        "model": "gpt-realtime",
        "audio": {"input": {"turn_detection": None}, "output": {"voice": "marin"}},
    }
    assert translate({"type": "session.updated", "session": session}) == SessionConfigured(
        {"model": "gpt-realtime", "voice": "marin", "transcription": None, "turn_detection": None}
    )
    assert translate({"type": "rate_limits.updated"}) is None


def test_commands_have_the_ga_shape() -> None:
    assert client_event(greeting("Hi there")) == {
        "type": "response.create",
        "response": {"instructions": "Greet the caller: Hi there"},
    }
    assert client_event(CONTINUE) == {"type": "response.create"}
    assert client_event(ToolOutput("call_1", '{"output": 1}')) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"output": 1}'},
    }
