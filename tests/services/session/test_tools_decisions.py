"""The pure decisions behind tools, transfers and turn-taking: no servers needed."""

from __future__ import annotations

from datetime import UTC, datetime

from services.session.actions import unfinished_tool_calls
from services.session.telephony import (
    TransferRefused,
    TransferTarget,
    is_dialable,
    resolve_model_target,
    resolve_operator_target,
)
from services.session.tools import (
    ToolResult,
    ToolRun,
    judge_existing,
    parse_arguments,
    parse_reply,
    run_key,
)
from services.session.turns import TurnGate
from shared.agents import AgentProfile, BuiltinTool
from shared.events import CallEvent


def agent(*tools: BuiltinTool) -> AgentProfile:
    return AgentProfile(
        name="salon", model="m", voice="v", instructions="i", greeting="g", tools=list(tools)
    )


TRANSFER = BuiltinTool(builtin="transfer_call", targets={"reception": "tel:+61290000000"})


def test_replies_from_tool_services() -> None:
    assert parse_reply(b'{"output": {"free": ["10:00"]}}') == ToolResult(output={"free": ["10:00"]})
    assert parse_reply(b'{"output": null}') == ToolResult(output=None)
    assert parse_reply(b'{"error": "closed"}') == ToolResult(error="closed")
    assert parse_reply(b"<html>").error is not None
    assert parse_reply(b'{"result": 1}').error is not None
    assert parse_reply(b"[1]").error is not None


def test_arguments_must_be_a_json_object() -> None:
    assert parse_arguments('{"day": "monday"}') == {"day": "monday"}
    assert parse_arguments("") == {}
    assert parse_arguments("[1]") is None
    assert parse_arguments("{oops") is None


def test_run_keys_are_safe_for_kv() -> None:
    assert run_key("rtc_abc", "call_1") == "rtc_abc.call_1"
    key = run_key("rtc_abc", "call with spaces.and>wildcards")
    assert key.startswith("rtc_abc.") and " " not in key and ">" not in key


def test_an_existing_run_is_replayed_waited_for_or_declared_interrupted() -> None:
    running = ToolRun(state="running", name="t", worker="w", started_at=100.0, deadline=108.0)
    done = running.model_copy(update={"state": "done", "result": {"output": 1}})
    assert judge_existing(done, now=10_000) == "replay"
    assert judge_existing(running, now=105) == "wait"
    assert judge_existing(running, now=109) == "wait"  # within the grace
    assert judge_existing(running, now=111) == "interrupted"


def test_the_model_picks_a_name_never_a_number() -> None:
    salon = agent(TRANSFER)
    assert resolve_model_target(salon, {"target": "reception"}) == TransferTarget(
        "reception", "tel:+61290000000"
    )
    raw = resolve_model_target(salon, {"target": "tel:+61299999999"})
    assert isinstance(raw, TransferRefused) and raw.reason == "unknown_target"
    assert "reception" in raw.message
    missing = resolve_model_target(salon, {})
    assert isinstance(missing, TransferRefused) and missing.reason == "unknown_target"
    off = resolve_model_target(agent(), {"target": "reception"})
    assert isinstance(off, TransferRefused) and off.reason == "not_allowed"


def test_an_operator_may_name_a_target_or_dial_a_uri() -> None:
    salon = agent(TRANSFER)
    assert resolve_operator_target(salon, "reception").uri == "tel:+61290000000"
    assert resolve_operator_target(salon, "tel:+14155550123").uri == "tel:+14155550123"
    assert resolve_operator_target(agent(), "sip:desk@example.com").uri == "sip:desk@example.com"
    assert isinstance(resolve_operator_target(salon, "+1415 then hang up"), TransferRefused)
    assert is_dialable("tel:+61 2 9000 0000")
    assert not is_dialable("http://example.com")


def test_tool_outputs_wait_for_the_response_that_asked() -> None:
    gate = TurnGate()
    gate.observe({"type": "response.created", "response": {"id": "r1"}})
    gate.tool_started("c1")
    gate.tool_finished("c1", '{"output": 1}')
    assert gate.take() == []  # r1 still in progress
    gate.observe({"type": "response.done", "response": {"id": "r1"}})
    sent = gate.take()
    assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]
    assert sent[0]["item"] == {
        "type": "function_call_output",
        "call_id": "c1",
        "output": '{"output": 1}',
    }
    assert gate.take() == []  # our response.create is on its way


def test_parallel_tool_calls_answer_together_and_say_waits_its_turn() -> None:
    gate = TurnGate()
    gate.tool_started("c1")
    gate.tool_started("c2")
    gate.tool_finished("c1", "a")
    gate.say("Tell the caller about parking.")
    assert gate.take() == []  # c2 still running
    gate.tool_finished("c2", "b")
    assert [e["type"] for e in gate.take()] == ["conversation.item.create"] * 2 + [
        "response.create"
    ]
    gate.observe({"type": "response.created", "response": {"id": "r2"}})
    gate.observe({"type": "response.done", "response": {"id": "r2"}})
    assert gate.take() == [
        {"type": "response.create", "response": {"instructions": "Tell the caller about parking."}}
    ]


def test_the_goodbye_is_the_response_after_end_call() -> None:
    gate = TurnGate()
    gate.observe({"type": "response.created", "response": {"id": "r1"}})
    gate.tool_started("c1")
    gate.tool_finished("c1", "bye", goodbye=True)
    gate.observe({"type": "response.done", "response": {"id": "r1"}})
    assert gate.observe({"type": "output_audio_buffer.stopped", "response_id": "r0"}) is False
    gate.take()
    gate.observe({"type": "response.created", "response": {"id": "r2"}})
    assert gate.observe({"type": "output_audio_buffer.stopped", "response_id": "r1"}) is False
    gate.observe({"type": "response.done", "response": {"id": "r2"}})
    assert gate.observe({"type": "output_audio_buffer.stopped", "response_id": "r2"}) is True


def test_a_reattach_forgets_responses_whose_end_was_lost() -> None:
    gate = TurnGate()
    gate.observe({"type": "response.created", "response": {"id": "r1"}})
    gate.tool_started("c1")
    gate.tool_finished("c1", "x")
    gate.reattached()
    assert len(gate.take()) == 2


def _event(seq: int, type: str, **data: object) -> CallEvent:
    return CallEvent(type=type, call_id="rtc", seq=seq, ts=datetime.now(UTC), data=dict(data))


def test_tool_calls_left_open_by_a_dead_worker() -> None:
    events = [
        _event(1, "tool.called", tool_call_id="a", name="t", arguments={}),
        _event(2, "tool.completed", tool_call_id="a", output=1),
        _event(3, "tool.called", tool_call_id="b", name="t", arguments={"x": 1}),
    ]
    assert [e.data["tool_call_id"] for e in unfinished_tool_calls(events)] == ["b"]
