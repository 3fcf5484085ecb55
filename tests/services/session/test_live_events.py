"""GPT-Live's events in the runner's vocabulary, and the runner's commands on Live's wire:
the pure part of `LiveSideband`, checked against the SDK's types."""

from __future__ import annotations

import json

import pytest

from services.session.live_events import (
    Seen,
    client_event,
    is_reflected_audio,
    parse,
    translate,
)
from services.session.live_turns import Turns
from services.session.sideband import (
    AgentAudioStopped,
    AgentTranscript,
    CallEnded,
    CallerSpeechStarted,
    CallerTranscript,
    Dtmf,
    ResponseDone,
    ResponseStarted,
    Speak,
    ToolCallRequested,
    ToolOutput,
)
from simulator.live import check_client_event, check_server_event
from simulator.live.model import audio_events


def delta(kind: str, text: str, start_ms: int = 0) -> dict:
    event = {"type": f"session.{kind}_transcript.delta", "event_id": "e", "delta": text,
             "start_ms": start_ms, "end_ms": start_ms + 100}  # fmt: skip
    check_server_event(event)
    return event


def nested(inner: dict, delegation_id: str = "deleg_1") -> dict:
    event = {"type": "response.event", "event_id": "e", "delegation_id": delegation_id,
             "event": inner}  # fmt: skip
    return event


def test_reflected_audio_is_recognised_without_parsing_whichever_the_field_order() -> None:
    caller, agent = audio_events(100, 0)
    assert is_reflected_audio(caller) and is_reflected_audio(agent)
    reordered = json.dumps({"delta": json.loads(agent)["delta"], "start_ms": 0, "end_ms": 1,
                            "type": "session.output_audio.delta"})  # fmt: skip
    assert is_reflected_audio(reordered) and is_reflected_audio(reordered.encode())
    said = json.dumps(delta("input", "the session.output_audio.delta is " + "x" * 500))
    assert not is_reflected_audio(said)  # the marker must be a whole quoted type


def test_deltas_are_grouped_into_turns_ended_by_the_other_side_or_by_quiet() -> None:
    turns = Turns(quiet_s=0.5)
    assert translate(delta("input", "Hi, a hair"), turns, 0.0) == [CallerSpeechStarted()]
    assert translate(delta("input", "cut please."), turns, 0.1) == []
    assert turns.deadline() == pytest.approx(0.6)
    events = translate(delta("output", "Sure, ", 900), turns, 0.2)
    assert events == [CallerTranscript("Hi, a haircut please.", "turn_0")]
    translate(delta("output", "Friday?", 950), turns, 0.3)
    assert turns.due(0.7) == []
    assert turns.due(0.8) == [AgentTranscript("Sure, Friday?", "turn_900"), AgentAudioStopped()]
    assert turns.deadline() is None


@pytest.mark.parametrize(
    ("reason", "cause"),
    [("remote_hangup", "hangup"), ("expired", "expired"), ("close_requested", "hangup"),
     ("content", "error"), ("connection_lost", "error")],
)  # fmt: skip
def test_session_closed_ends_the_call_and_flushes_the_open_turn(reason: str, cause: str) -> None:
    turns = Turns()
    translate(delta("output", "Goodbye!"), turns, 0.0)
    closed = {"type": "session.closed", "event_id": "e", "reason": reason,
              "session": {"id": "live_1", "expires_at": 1, "model": "gpt-live-1",
                          "status": "active"}, "usage": {"seconds": 3.0}}  # fmt: skip
    check_server_event(closed)
    assert translate(closed, turns, 0.1) == [
        AgentTranscript("Goodbye!", "turn_0"), AgentAudioStopped(), CallEnded(cause)
    ]  # fmt: skip


def test_a_delegated_function_call_and_its_response_lifecycle() -> None:
    turns = Turns()
    item = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
            "name": "lookup", "arguments": '{"id": "7"}'}  # fmt: skip
    snapshot = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-5-mini",
                "output": [], "tools": [], "parallel_tool_calls": True,
                "tool_choice": "auto"}  # fmt: skip
    events = [
        nested({"type": "response.created", "sequence_number": 0,
                "response": {**snapshot, "status": "in_progress"}}),
        nested({"type": "response.output_item.done", "sequence_number": 1, "output_index": 0,
                "item": item}),
        nested({"type": "response.completed", "sequence_number": 2,
                "response": {**snapshot, "status": "completed"}}),
    ]  # fmt: skip
    meanings = [m for e in events for m in (check_server_event(e), translate(e, turns, 0))[1]]
    assert meanings == [
        ResponseStarted(),
        ToolCallRequested("call_1", "lookup", '{"id": "7"}'),
        ResponseDone("completed"),
    ]


def test_dtmf_and_unrelated_events() -> None:
    turns = Turns()
    assert translate({"type": "transport.dtmf.received", "event": "#", "event_id": "e"},
                     turns, 0) == [Dtmf("#")]  # fmt: skip
    assert translate({"type": "session.usage.updated", "usage": {"seconds": 1.0}}, turns, 0) == []
    assert parse("not json") is None and parse("[1]") is None


@pytest.mark.parametrize(
    "command",
    [Speak("greeting", "Greet the caller: Hello!"), Speak("operator", "Say: one moment"),
     Speak("continue"), ToolOutput("call_1", '{"free": ["09:00"]}')],
)  # fmt: skip
def test_commands_are_live_client_events_of_the_sdks_types(command) -> None:
    event = client_event(command)
    check_client_event(event)  # strictly the SDK's params
    if isinstance(command, Speak) and command.instructions is not None:
        assert event == {"type": "session.instructions.append",
                         "content": command.instructions, "delegation_id": None}  # fmt: skip


def test_a_replayed_event_is_seen_once() -> None:
    seen = Seen(size=2)
    first, second, third = ({"type": "x", "event_id": f"e{i}"} for i in range(3))
    assert seen.first_time(first) and seen.first_time(second)
    assert not seen.first_time(first)
    assert seen.first_time(third) and seen.first_time(first)  # bounded: e0 was forgotten
    assert seen.first_time({"type": "session.input_audio.append"})  # no id: always new
