"""The sideband WebSocket: handshake rules, the simulated model, scripted callers, drops."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from simulator import CallerScript, Faults, Simulator

from .conftest import Worker, recv_until, send

GREET = {"type": "response.create", "response": {"instructions": "Greet the caller: Hello there"}}


async def _live_call(simulator: Simulator, worker: Worker, script: CallerScript | None = None):
    call = await simulator.place_call(script)
    assert (await worker.accept(call.call_id)).status_code == 200
    return call


async def _status(worker: Worker, call_id: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as info:
        await worker.attach(call_id, **kwargs)
    return info.value.response.status_code


async def test_handshake_rules(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    assert await _status(worker, call.call_id) == 404  # not accepted yet
    assert await _status(worker, "rtc_unknown") == 404
    await worker.accept(call.call_id)
    assert await _status(worker, call.call_id, key=None) == 401
    assert await _status(worker, call.call_id, key="sk-wrong") == 401
    assert await _status(worker, call.call_id, extra={"OpenAI-Beta": "realtime=v1"}) == 400
    await worker.post(call.call_id, "hangup")
    assert await _status(worker, call.call_id) == 404  # ended


async def test_session_created_then_greeting(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker)
    async with await worker.attach(call.call_id) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created"
        assert created["session"]["type"] == "realtime"
        assert created["session"]["instructions"] == "You are a friendly receptionist."
        await send(ws, GREET)
        events = await recv_until(ws, "output_audio_buffer.stopped")
    types = [e["type"] for e in events]
    # OpenAI's whole stream for a spoken response, in its order.
    assert [t for t in types if not t.endswith(".delta")] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "output_audio_buffer.started",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "output_audio_buffer.stopped",
    ]
    assert "response.output_audio_transcript.delta" in types
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert done["transcript"] == "Hello there" and done["item_id"].startswith("item_")
    deltas = "".join(e["delta"] for e in events if e["type"].endswith("transcript.delta"))
    assert deltas == "Hello there"
    assert all(e["event_id"].startswith("event_") for e in events)
    assert call.client_events == [GREET]
    assert call.agent_transcripts == ["Hello there"]


async def test_model_does_not_speak_first(simulator: Simulator, worker: Worker) -> None:
    script = CallerScript(greeting_wait_s=5, steps=[{"say": "hi"}])
    call = await _live_call(simulator, worker, script)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")
        await send(ws, {"type": "session.update", "session": {"type": "realtime"}})
        # The next event is the answer to our update: nothing was said on its own.
        assert json.loads(await ws.recv())["type"] == "session.updated"
    assert call.agent_transcripts == []


async def test_session_update_rules(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")
        await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "session.type"
        update = {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
            },
        }
        await send(ws, update)
        updated = (await recv_until(ws, "session.updated"))[-1]["session"]
        assert updated["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
        assert updated["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
        await send(ws, {"type": "session.update", "session": {"type": "realtime", "voice": "x"}})
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["code"] == "unknown_parameter" and error["param"] == "session.voice"


async def test_bad_client_events_get_error_events(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")
        await ws.send("not json")
        assert (await recv_until(ws, "error"))[-1]["error"]["code"] == "invalid_json"
        await send(ws, {"type": "response.audio.delta"})
        assert (await recv_until(ws, "error"))[-1]["error"]["code"] == "invalid_value"
        await send(ws, {"type": "response.cancel"})
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["code"] == "response_cancel_not_active"


async def test_caller_hangup_drops_socket_without_close_frame(
    simulator: Simulator, worker: Worker
) -> None:
    call = await _live_call(simulator, worker)
    ws = await worker.attach(call.call_id)
    await recv_until(ws, "session.created")
    await call.hang_up()
    with pytest.raises(ConnectionClosedError) as info:
        await recv_until(ws, "never")
    assert info.value.rcvd is None
    assert call.state == "ended" and call.end_reason == "caller_hangup"
    assert await _status(worker, call.call_id) == 404


async def test_scripted_hangup_after_greeting(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker, CallerScript.builtin("hangup_quickly"))
    ws = await worker.attach(call.call_id)
    await send(ws, GREET)
    with pytest.raises(ConnectionClosedError) as info:
        await recv_until(ws, "never")
    assert info.value.rcvd is None
    await call.wait_for("ended", timeout=2)
    assert call.agent_transcripts == ["Hello there"] and call.end_reason == "caller_hangup"


async def test_our_hangup_closes_normally(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker)
    ws = await worker.attach(call.call_id)
    await recv_until(ws, "session.created")
    await worker.post(call.call_id, "hangup")
    with pytest.raises(ConnectionClosedOK):
        await recv_until(ws, "never")
    assert call.end_reason == "hangup"


async def test_reattach_and_drop(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker)
    first = await worker.attach(call.call_id)
    await recv_until(first, "session.created")
    await call.drop_sideband()
    with pytest.raises(ConnectionClosedError):
        await recv_until(first, "never")
    assert call.state == "accepted"
    async with await worker.attach(call.call_id) as second:
        await recv_until(second, "session.created")
        async with await worker.attach(call.call_id) as third:  # concurrent: allowed
            await recv_until(third, "session.created")
    assert call.attach_count == 3


async def test_no_concurrent_sideband_when_reattach_disallowed(
    simulator: Simulator, worker: Worker, faults: Faults
) -> None:
    faults.allow_reattach = False
    call = await _live_call(simulator, worker)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")
        assert await _status(worker, call.call_id) == 409
    await call.wait_until(lambda c: c.sockets_open == 0)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")


async def test_drop_sideband_after_fault(
    simulator: Simulator, worker: Worker, faults: Faults
) -> None:
    faults.drop_sideband_after_s = 0.05
    call = await _live_call(simulator, worker)
    ws = await worker.attach(call.call_id)
    with pytest.raises(ConnectionClosedError) as info:
        await recv_until(ws, "never")
    assert info.value.rcvd is None and call.state == "accepted"


async def test_conversation_with_tool_call(simulator: Simulator, worker: Worker) -> None:
    script = CallerScript.model_validate(
        {
            "steps": [
                {"say": "Can I book Friday?", "reply": "Let me check."},
                {
                    "tool_call": {"name": "check_availability", "arguments": {"day": "friday"}},
                    "reply": "Friday at 3 pm is free.",
                },
                {"dtmf": "5"},
                {"hangup": True},
            ]
        }
    )
    call = await _live_call(simulator, worker, script)
    ws = await worker.attach(call.call_id)
    await send(ws, GREET)
    events = await recv_until(ws, "response.function_call_arguments.done")
    types = [e["type"] for e in events]
    for expected in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.completed",
    ):
        assert expected in types
    caller = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert caller["transcript"] == "Can I book Friday?"
    tool = events[-1]
    assert tool["call_id"].startswith("call_") and tool["name"] == "check_availability"
    assert json.loads(tool["arguments"]) == {"day": "friday"}
    await recv_until(ws, "response.done")
    output = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": tool["call_id"], "output": "{}"},
    }
    await send(ws, output)
    await send(ws, {"type": "response.create"})
    events = await recv_until(ws, "input_audio_buffer.dtmf_event_received")
    done = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert done[-1]["transcript"] == "Friday at 3 pm is free."
    assert events[-1]["event"] == "5" and isinstance(events[-1]["received_at"], int)
    with pytest.raises(ConnectionClosedError):
        await recv_until(ws, "never")
    assert call.end_reason == "caller_hangup"
    assert call.agent_transcripts[:2] == ["Hello there", "Let me check."]


async def test_active_response_conflict(simulator: Simulator, worker: Worker) -> None:
    call = await _live_call(simulator, worker, CallerScript(agent_latency_s=0.3))
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "session.created")
        await send(ws, GREET)
        await recv_until(ws, "response.created")
        await send(ws, {"type": "response.create"})
        events = await recv_until(ws, "error")
        assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
        assert "response.done" not in [e["type"] for e in events]
        await recv_until(ws, "output_audio_buffer.stopped")
    assert call.agent_transcripts == ["Hello there"]


async def test_tool_call_conflict_then_round_trip(simulator: Simulator, worker: Worker) -> None:
    script = CallerScript.model_validate(
        {
            "greeting_wait_s": 0,
            "agent_latency_s": 0.3,
            "steps": [{"tool_call": {"name": "lookup"}, "reply": "Found it."}],
        }
    )
    call = await _live_call(simulator, worker, script)
    async with await worker.attach(call.call_id) as ws:
        await recv_until(ws, "response.created")
        await send(ws, {"type": "response.create"})  # too early: the tool call is in progress
        events = await recv_until(ws, "response.done")
        errors = [e for e in events if e["type"] == "error"]
        assert errors[0]["error"]["code"] == "conversation_already_has_active_response"
        tool = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert tool["arguments"] == "{}"
        item = {"type": "function_call_output", "call_id": tool["call_id"], "output": "{}"}
        await send(ws, {"type": "conversation.item.create", "item": item})
        added = (await recv_until(ws, "conversation.item.added"))[-1]
        assert added["item"]["id"].startswith("item_")
        await send(ws, {"type": "response.create"})
        events = await recv_until(ws, "response.output_audio_transcript.done")
        assert events[-1]["transcript"] == "Found it."


async def test_script_resumes_after_reattach(simulator: Simulator, worker: Worker) -> None:
    script = CallerScript.model_validate(
        {"greeting_wait_s": 0, "agent_speech_s": 0.5, "steps": [{"say": "one"}, {"say": "two"}]}
    )
    call = await _live_call(simulator, worker, script)
    ws = await worker.attach(call.call_id)
    first = await recv_until(ws, "conversation.item.input_audio_transcription.completed")
    assert first[-1]["transcript"] == "one"
    # Dropped while the model answers "one": the caller waits for a listener before "two".
    await call.drop_sideband()
    with pytest.raises(ConnectionClosedError):
        await recv_until(ws, "never")
    async with await worker.attach(call.call_id) as again:
        events = await recv_until(again, "conversation.item.input_audio_transcription.completed")
        assert events[-1]["transcript"] == "two"
    assert call.attach_count == 2 and call.step_index == 2


async def test_session_cap(simulator: Simulator, worker: Worker, faults: Faults) -> None:
    faults.session_cap_s = 0.1
    call = await _live_call(simulator, worker)
    ws = await worker.attach(call.call_id)
    await call.wait_for("ended", timeout=2)
    assert call.end_reason == "session_cap"
    with pytest.raises(websockets.ConnectionClosed):
        await recv_until(ws, "never")


async def test_chatter(simulator: Simulator, worker: Worker) -> None:
    script = CallerScript.model_validate(
        {
            "greeting_wait_s": 0,
            "steps": [{"chatter": {"rate": 50, "duration_s": 0.1}}, {"hangup": True}],
        }
    )
    call = await _live_call(simulator, worker, script)
    ws = await worker.attach(call.call_id)
    kinds: list[str] = []
    with pytest.raises(ConnectionClosedError):
        while True:
            kinds.append(json.loads(await ws.recv())["type"])
    assert (
        kinds.count("rate_limits.updated")
        + kinds.count("conversation.item.input_audio_transcription.delta")
        == 5
    )


async def test_stop_leaves_nothing_behind(webhook_receiver, faults: Faults, worker: Worker) -> None:
    sim = Simulator("sk-test-simulator", "whsec_AAAA", webhook_receiver.url, faults=faults)
    await sim.start()
    worker.sim = sim
    script = CallerScript(agent_latency_s=5, steps=[{"chatter": {"rate": 10, "duration_s": 60}}])
    calls = [await sim.place_call(script) for _ in range(3)]
    sockets = []
    for call in calls:
        await worker.accept(call.call_id)
        ws = await worker.attach(call.call_id)
        await send(ws, GREET)  # a response stays active (long latency) when we stop
        sockets.append(ws)
    await calls[-1].wait_until(lambda c: len(c.client_events) == 1)
    await sim.stop()
    for ws in sockets:
        with pytest.raises(websockets.ConnectionClosed):
            await recv_until(ws, "never")
    ours = [
        task
        for task in asyncio.all_tasks()
        if "/simulator/" in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
        and "/tests/" not in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    ]
    assert ours == []
