"""Tools, end_call and transfers in whole calls: session workers on a real nats-server,
the simulator playing the model and the caller, the salon tool service over NATS."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import NatsBroker

from examples.salon_tools import salon_service
from services.session.tools import INTERRUPTED
from services.session.worker import SessionWorker
from shared.agents import AgentProfile, BuiltinTool, FunctionTool
from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from switchboard.toolkit import ToolRequest, ToolService
from tests.services.session.conftest import WorkerProcess, until
from tests.services.session.tools_bench import CallBench, outputs_sent, wait_ended

RECEPTION = "tel:+61290000000"


def salon_agent(transfer_timeout_s: float = 10.0, tool_timeout_s: float = 5.0) -> AgentProfile:
    return AgentProfile(
        name="salon",
        model="gpt-realtime-2.1",
        voice="marin",
        instructions="You book appointments.",
        greeting="Thanks for calling Bella Salon.",
        tools=[
            FunctionTool(
                name="check_availability",
                parameters={"type": "object", "properties": {"day": {"type": "string"}}},
                timeout_s=tool_timeout_s,
            ),
            FunctionTool(name="book_appointment", timeout_s=tool_timeout_s),
            FunctionTool(name="slow_lookup", timeout_s=tool_timeout_s),
            BuiltinTool(builtin="end_call", timeout_s=5.0),
            BuiltinTool(
                builtin="transfer_call",
                targets={"reception": RECEPTION},
                timeout_s=transfer_timeout_s,
            ),
        ],
    )


def script(*steps: dict[str, Any], **options: Any) -> CallerScript:
    return CallerScript.model_validate({"steps": list(steps), "tool_timeout_s": 15, **options})


@pytest.fixture
async def salon(nats_server: NatsServer) -> AsyncIterator[dict[str, Any]]:
    """The salon example plus a slow tool the test releases itself."""
    state: dict[str, Any] = {"slow": [], "release": asyncio.Event()}
    service = salon_service(broker=NatsBroker(nats_server.url))
    extra = ToolService(NatsBroker(nats_server.url))

    @extra.tool("slow_lookup")
    async def slow_lookup(request: ToolRequest) -> dict[str, Any]:
        state["slow"].append(request)
        await state["release"].wait()
        return {"found": request.arguments.get("q")}

    await service.start()
    await extra.start()
    yield state
    state["release"].set()
    await extra.stop()
    await service.stop()


async def bench_for(nats_server: NatsServer, faults: Faults | None = None) -> CallBench:
    return await CallBench(nats_server.url, faults).start()


@pytest.fixture
async def bench(nats_server: NatsServer) -> AsyncIterator[CallBench]:
    running = await bench_for(nats_server)
    yield running
    await running.stop()


def events_of(bench: CallBench, call_id: str, type: str) -> list[dict[str, Any]]:
    return [e.data for e in bench.events.of_type(call_id, type)]


async def test_tool_round_trip(bench: CallBench, salon) -> None:
    call = await bench.call(
        script(
            {
                "tool_call": {"name": "check_availability", "arguments": {"day": "Monday"}},
                "reply": "Monday we have ten.",
            },
            {
                "tool_call": {
                    "name": "book_appointment",
                    "arguments": {"day": "monday", "time": "10:00", "name": "Ana"},
                },
                "reply": "Booked.",
            },
            {"hangup": True},
        ),
        salon_agent(),
    )
    await bench.events.wait_for(call.call_id, "call.report", timeout=20)

    completed = events_of(bench, call.call_id, "tool.completed")
    assert [c["name"] for c in completed] == ["check_availability", "book_appointment"]
    assert "10:00" in completed[0]["output"]["free"]
    assert completed[1]["output"]["confirmed"] is True
    outputs = outputs_sent(call)
    assert [json.loads(o["output"]) for o in outputs] == [
        {"output": completed[0]["output"]},
        {"output": completed[1]["output"]},
    ]
    # Each output was followed by a response.create the model accepted: it spoke the reply.
    assert "Monday we have ten." in call.agent_transcripts
    assert "Booked." in call.agent_transcripts
    report = events_of(bench, call.call_id, "call.report")[0]
    assert [t["ok"] for t in report["tools"]] == [True, True]


async def test_tool_timeout_and_error_are_told_to_the_model(bench: CallBench, salon) -> None:
    call = await bench.call(
        script(
            {"tool_call": {"name": "slow_lookup", "arguments": {"q": "x"}}, "reply": "Sorry."},
            {
                "tool_call": {"name": "check_availability", "arguments": {"day": "sunday"}},
                "reply": "We are closed Sundays.",
            },
            {"hangup": True},
        ),
        salon_agent(tool_timeout_s=0.5),
    )
    await bench.events.wait_for(call.call_id, "call.report", timeout=20)

    completed = events_of(bench, call.call_id, "tool.completed")
    assert completed[0]["error"] == "slow_lookup did not answer in time"
    assert completed[1]["error"] == "we are open Monday to Saturday"
    told = [json.loads(o["output"]) for o in outputs_sent(call)]
    assert told == [{"error": completed[0]["error"]}, {"error": completed[1]["error"]}]
    assert "We are closed Sundays." in call.agent_transcripts


async def test_one_run_across_a_reattach_and_a_duplicated_event(bench: CallBench, salon) -> None:
    call = await bench.call(
        script(
            {"tool_call": {"name": "slow_lookup", "arguments": {"q": "x"}}, "reply": "Found it."},
            {"hangup": True},
        ),
        salon_agent(tool_timeout_s=10),
    )
    await bench.events.wait_for(call.call_id, "tool.called", timeout=15)
    tool_call_id = events_of(bench, call.call_id, "tool.called")[0]["tool_call_id"]

    await call.drop_sideband()  # the worker's socket dies while the tool runs
    await call.wait_until(lambda c: c.attach_count >= 2 and c.sockets_open == 1, 15)
    await call.emit(  # and the model's event arrives again on the new socket
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_dup",
            "item_id": "item_dup",
            "output_index": 0,
            "call_id": tool_call_id,
            "name": "slow_lookup",
            "arguments": json.dumps({"q": "x"}),
        }
    )
    salon["release"].set()
    await bench.events.wait_for(call.call_id, "call.report", timeout=20)

    assert len(salon["slow"]) == 1
    assert [o["call_id"] for o in outputs_sent(call)] == [tool_call_id]
    assert len(events_of(bench, call.call_id, "tool.called")) == 1
    assert len(events_of(bench, call.call_id, "tool.completed")) == 1
    assert "Found it." in call.agent_transcripts


async def test_end_call_lets_the_goodbye_play_then_hangs_up(bench: CallBench, salon) -> None:
    call = await bench.call(
        script(
            {"tool_call": {"name": "end_call", "arguments": {}}, "reply": "Goodbye, see you!"},
            agent_speech_s=0.5,
        ),
        salon_agent(),
    )
    await wait_ended(call)
    await bench.events.wait_for(call.call_id, "call.ended", timeout=10)

    assert call.end_reason == "hangup"  # our REST hangup, not the caller
    assert events_of(bench, call.call_id, "call.ended")[0]["reason"] == "agent_hangup"
    assert call.agent_transcripts[-1] == "Goodbye, see you!"
    # The goodbye's playback finished before the hang-up: its `stopped` reached the worker
    # (the simulator cancels a response still playing when the call ends).
    assert bench.events.of_type(call.call_id, "transcript.agent")[-1].data["text"] == (
        "Goodbye, see you!"
    )


async def test_transfer_to_a_named_target(nats_server: NatsServer, salon) -> None:
    bench = await bench_for(nats_server, Faults(refer_outcome="transfer"))
    try:
        call = await bench.call(
            script({"tool_call": {"name": "transfer_call", "arguments": {"target": "reception"}}}),
            salon_agent(),
        )
        await bench.events.wait_for(call.call_id, "call.ended", timeout=20)
    finally:
        await bench.stop()
    assert call.refer_targets == [RECEPTION]
    assert call.end_reason == "transferred"
    transferred = events_of(bench, call.call_id, "call.transferred")
    assert transferred == [{"target": "reception", "uri": RECEPTION, "reason": "call_left"}]
    assert events_of(bench, call.call_id, "call.ended")[0]["reason"] == "transferred"
    assert events_of(bench, call.call_id, "transfer.failed") == []


async def test_a_silent_refer_fails_the_transfer_and_the_model_is_told(
    nats_server: NatsServer, salon
) -> None:
    bench = await bench_for(nats_server, Faults(refer_outcome="silent"))
    try:
        call = await bench.call(
            script(
                {
                    "tool_call": {"name": "transfer_call", "arguments": {"target": "reception"}},
                    "reply": "Sorry, nobody is free.",
                },
                {"hangup": True},
            ),
            salon_agent(transfer_timeout_s=1.0),
        )
        await bench.events.wait_for(call.call_id, "call.report", timeout=20)
    finally:
        await bench.stop()
    assert call.refer_targets == [RECEPTION]
    assert events_of(bench, call.call_id, "transfer.failed") == [
        {"target": "reception", "reason": "timeout"}
    ]
    assert events_of(bench, call.call_id, "call.transferred") == []
    assert "error" in json.loads(outputs_sent(call)[0]["output"])
    assert "Sorry, nobody is free." in call.agent_transcripts
    assert events_of(bench, call.call_id, "call.ended")[0]["reason"] == "caller_hangup"


async def test_a_transfer_to_an_unknown_target_is_refused(bench: CallBench, salon) -> None:
    call = await bench.call(
        script(
            {
                "tool_call": {"name": "transfer_call", "arguments": {"target": "tel:+61299999999"}},
                "reply": "I can only transfer you to reception.",
            },
            {"hangup": True},
        ),
        salon_agent(),
    )
    await bench.events.wait_for(call.call_id, "call.report", timeout=20)

    assert call.refer_targets == []
    failed = events_of(bench, call.call_id, "transfer.failed")
    assert failed == [{"target": "tel:+61299999999", "reason": "unknown_target"}]
    told = json.loads(outputs_sent(call)[0]["output"])
    assert "reception" in told["error"]


async def test_a_tool_call_left_by_a_killed_worker_is_answered_by_the_next_owner(
    nats_server: NatsServer, salon, tmp_path: Path
) -> None:
    """The model never repeats `response.function_call_arguments.done`: the new owner finds
    the unanswered `tool.called` in the call's events and answers it (the tool is not run
    again; its run, overdue, is closed as interrupted)."""
    bench = await CallBench(nats_server.url, workers=0).start()
    doomed = WorkerProcess(bench, "doomed", 5, tmp_path)  # type: ignore[arg-type]
    try:
        await doomed.wait_ready()
        call = await bench.call(
            script(
                {"tool_call": {"name": "slow_lookup", "arguments": {"q": "x"}}, "reply": "Sorry."},
                {"hangup": True},
            ),
            salon_agent(tool_timeout_s=1.0),
        )
        await bench.events.wait_for(call.call_id, "tool.called", timeout=15)
        tool_call_id = events_of(bench, call.call_id, "tool.called")[0]["tool_call_id"]
        await until(lambda: len(salon["slow"]) == 1, timeout=10)  # the tool is working

        doomed.signal(signal.SIGKILL)
        survivor = SessionWorker(bench.settings(), 5, "survivor")
        bench.workers.append(survivor)
        await survivor.start()
        await bench.events.wait_for(call.call_id, "call.report", timeout=30)
    finally:
        doomed.stop()
        await bench.stop()

    attached = events_of(bench, call.call_id, "session.attached")
    assert [(a["worker"], a["attempt"]) for a in attached] == [("doomed", 1), ("survivor", 2)]
    assert len(salon["slow"]) == 1  # never run twice
    completed = events_of(bench, call.call_id, "tool.completed")
    assert [(c["tool_call_id"], c["error"]) for c in completed] == [(tool_call_id, INTERRUPTED)]
    outputs = outputs_sent(call)
    assert [o["call_id"] for o in outputs] == [tool_call_id]
    assert json.loads(outputs[0]["output"]) == {"error": INTERRUPTED}
    assert "Sorry." in call.agent_transcripts  # the response.create followed: the model spoke
    assert [e["reason"] for e in events_of(bench, call.call_id, "call.ended")] == ["caller_hangup"]
