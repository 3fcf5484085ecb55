"""A tool service is untrusted: whatever it answers, the run is closed, the model is told,
and the worker keeps its NATS connection and its other calls (issue 22, items 1 and 2).
Session workers on a real nats-server, the simulator as OpenAI, a hostile tool service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.kv import KeyValue
from prometheus_client import REGISTRY

from services.session.tools import ToolRun, run_key
from shared.agents import AgentProfile
from shared.streams import TOOL_RUNS_BUCKET
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.hostile_tools import HostileTools, hostile_tool
from tests.services.session.tools_bench import CallBench, outputs_sent


def agent() -> AgentProfile:
    return AgentProfile(
        name="hostile-line",
        model="gpt-realtime-2.1",
        voice="marin",
        instructions="You look things up.",
        greeting="Hello.",
        tools=[hostile_tool(timeout_s=1.0)],
    )


def asks(*kinds: str) -> CallerScript:
    steps: list[dict[str, Any]] = [
        {"tool_call": {"name": "hostile", "arguments": {"reply": kind}}, "reply": f"Done {kind}."}
        for kind in kinds
    ]
    return CallerScript.model_validate({"steps": [*steps, {"hangup": True}], "tool_timeout_s": 15})


def runs_counted(outcome: str) -> float:
    labels = {"tool": "hostile", "outcome": outcome}
    return REGISTRY.get_sample_value("switchboard_tool_runs_total", labels) or 0.0


@pytest.fixture
async def bench(nats_server: NatsServer) -> AsyncIterator[CallBench]:
    running = await CallBench(nats_server.url).start()
    yield running
    await running.stop()


@pytest.fixture
async def hostile(nats_server: NatsServer) -> AsyncIterator[HostileTools]:
    service = await HostileTools(nats_server.url).start()
    yield service
    await service.stop()


async def run_record(bench: CallBench, call_id: str, tool_call_id: str) -> ToolRun:
    runs: KeyValue = await bench.nc.jetstream().key_value(TOOL_RUNS_BUCKET)
    entry = await runs.get(run_key(call_id, tool_call_id))
    assert entry.value is not None
    return ToolRun.model_validate_json(entry.value)


async def test_a_reply_just_under_nats_limit_is_refused_and_the_worker_keeps_nats(
    bench: CallBench, hostile: HostileTools
) -> None:
    too_large_before = runs_counted("too_large")
    worker = bench.workers[0]
    call = await bench.call(asks("huge"), agent())
    await bench.events.wait_for(call.call_id, "call.report", timeout=30)

    completed = bench.events.of_type(call.call_id, "tool.completed")
    assert len(completed) == 1 and "larger than" in completed[0].data["error"]
    assert "output" not in completed[0].data
    record = await run_record(bench, call.call_id, completed[0].data["tool_call_id"])
    assert record.state == "done" and record.result == {"error": completed[0].data["error"]}
    assert runs_counted("too_large") == too_large_before + 1
    assert json.loads(outputs_sent(call)[0]["output"]) == {"error": completed[0].data["error"]}
    assert "Done huge." in call.agent_transcripts  # the model was told and went on
    # The worker never lost NATS, and serves the next call as well.
    assert worker.nc is not None and worker.nc.is_connected
    assert worker.nc.stats["reconnects"] == 0
    following = await bench.call(asks("ok"), agent())
    await bench.events.wait_for(following.call_id, "call.report", timeout=30)
    assert "output" in bench.events.of_type(following.call_id, "tool.completed")[0].data


async def test_a_reply_nested_100000_deep_closes_the_run_as_an_error(
    bench: CallBench, hostile: HostileTools
) -> None:
    invalid_before = runs_counted("invalid")
    call = await bench.call(asks("deep", "invalid"), agent())
    await bench.events.wait_for(call.call_id, "call.report", timeout=30)

    completed = [e.data for e in bench.events.of_type(call.call_id, "tool.completed")]
    assert [("nested deeper" in c["error"]) for c in completed] == [True, False]
    assert "not valid JSON" in completed[1]["error"]
    for done in completed:
        record = await run_record(bench, call.call_id, done["tool_call_id"])
        assert record.state == "done" and "error" in (record.result or {})
    assert runs_counted("invalid") == invalid_before + 2
    report = bench.events.of_type(call.call_id, "call.report")[0].data
    assert [t["ok"] for t in report["tools"]] == [False, False]
    assert [json.loads(o["output"]) for o in outputs_sent(call)] == [
        {"error": c["error"]} for c in completed
    ]
