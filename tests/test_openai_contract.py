"""The contract with OpenAI, held to the openai SDK's own types (shared/openai_shapes.py).

Every server event the simulator can emit, every client event and REST body the services
can send, and every example agent profile go through the SDK's types, strictly (required
fields, value types, no field the SDK lacks). If the simulator or a service drifts from
OpenAI's shapes, this fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai.types.realtime.call_refer_params import CallReferParams
from openai.types.realtime.call_reject_params import CallRejectParams

from services.session.realtime import client_event
from services.session.sideband import Speak, ToolOutput
from services.session.turns import CONTINUE, goodbye, greeting, idle_prompt
from shared.accept_body import accept_body
from shared.agents import default_agent
from shared.agents_file import load_agents_file
from shared.openai_shapes import (
    ShapeError,
    check_accept_body,
    check_client_event,
    check_param,
    check_server_event,
    server_event_types,
)
from shared.settings import Settings
from simulator import CallerScript, Simulator
from tests.simulator.conftest import API_KEY, Worker, recv_until, send

EXAMPLE_AGENTS = Path(__file__).parents[1] / "examples" / "agents.yaml"

# What the simulator plays. The rest of the SDK's 46 types are for features a phone call
# does not use (text output, MCP, item retrieval, truncation, deletion, segments).
EMITTED = {
    "session.created",
    "session.updated",
    "error",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
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
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
    "rate_limits.updated",
}
BODY: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are a receptionist.",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "idle_timeout_ms": 300},
        },
        "output": {"voice": "marin"},
    },
}


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    sim = Simulator(
        API_KEY, "whsec_" + "A" * 32, "http://127.0.0.1:9/unused", webhook_max_attempts=1
    )
    await sim.start()
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            yield Worker(sim, http)
    finally:
        await sim.stop()


def test_the_sdk_knows_every_type_the_simulator_plays() -> None:
    assert server_event_types() >= EMITTED


async def test_every_event_the_simulator_plays_is_openais_shape(worker: Worker) -> None:
    sim = worker.sim
    script = CallerScript.model_validate(
        {
            "agent_speech_s": 0.3,
            "steps": [
                {"say": "Hi there", "reply": "Hello."},
                {"say": "mumble", "transcription_fails": True},
                {"tool_call": {"name": "lookup", "arguments": {"q": "x"}}, "reply": "Found it."},
                {"barge_in": {"say": "Wait", "after_s": 0.05}},
                {"dtmf": "1"},
                {"chatter": {"rate": 50, "duration_s": 0.1}},
            ],
        }
    )
    call = await sim.place_call(script)
    assert (await worker.accept(call.call_id, BODY)).status_code == 200
    seen: list[dict[str, Any]] = []
    ws = await worker.attach(call.call_id)
    await send(ws, client_event(greeting("Hello there")))
    await send(ws, client_event(greeting("Hello there")))  # a conflict: an error event
    seen += await recv_until(ws, "response.function_call_arguments.done")
    tool = seen[-1]
    seen += await recv_until(ws, "response.done")
    await send(ws, client_event(ToolOutput(tool["call_id"], '{"output": 1}')))
    await send(ws, client_event(CONTINUE))
    seen += await recv_until(ws, "output_audio_buffer.cleared")  # the barge-in
    seen += await recv_until(ws, "input_audio_buffer.timeout_triggered", timeout=10)
    await send(ws, {"type": "session.update", "session": {"type": "realtime"}})
    seen += await recv_until(ws, "session.updated")
    sim.faults.fail_responses = 1000
    for status in ("incomplete", "failed"):
        sim.faults.fail_responses_with = status  # type: ignore[assignment]
        await call.wait_until(lambda c: not c.model.active, timeout=5)
        await send(ws, client_event(idle_prompt()))
        seen += await recv_until(ws, "response.done")
    sim.faults.session_cap_s = 0.05
    await ws.close()

    expired = await sim.place_call(CallerScript())
    assert (await worker.accept(expired.call_id, BODY)).status_code == 200
    async with await worker.attach(expired.call_id) as ws2:
        seen += await recv_until(ws2, "error")

    for event in seen:
        check_server_event(event)  # checked again on arrival, as a worker gets them
    assert call.sockets.sent_types | expired.sockets.sent_types == EMITTED
    assert any(e["type"] == "error" and e["error"]["code"] == "session_expired" for e in seen)


def test_the_simulator_refuses_to_send_what_openai_never_would() -> None:
    with pytest.raises(ShapeError, match="usage"):
        check_server_event(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "event_id": "event_1",
                "item_id": "item_1",
                "content_index": 0,
                "transcript": "no usage",
            }
        )
    with pytest.raises(ShapeError, match="response_id"):
        check_server_event(
            {"type": "output_audio_buffer.cleared", "event_id": "e", "response_id": None}
        )


@pytest.mark.parametrize(
    "command",
    [
        greeting("Hi"),
        goodbye(),
        idle_prompt(),
        Speak("operator", "Say: one moment"),
        CONTINUE,
        ToolOutput("call_1", json.dumps({"output": {"free": ["10:00"]}})),
    ],
)
def test_every_client_event_the_worker_sends_is_openais_shape(command: Any) -> None:
    check_client_event(client_event(command))


def test_every_example_profile_makes_an_accept_body_openai_takes() -> None:
    default = default_agent(Settings(_env_file=None))  # type: ignore[call-arg]
    profiles = [default, *load_agents_file(EXAMPLE_AGENTS, default)]
    assert len(profiles) > 1
    for profile in profiles:
        check_accept_body(accept_body(profile))


def test_the_rest_bodies_the_services_send_are_openais_shape() -> None:
    check_param(CallRejectParams, {"status_code": 486})
    check_param(CallReferParams, {"target_uri": "tel:+61290000000"})
    with pytest.raises(ShapeError):
        check_param(CallReferParams, {"target": "tel:+61290000000"})


def test_an_accept_body_openai_would_refuse_is_refused() -> None:
    body = {**BODY, "audio": {"input": {"transcription": {"delay": "fast"}}}}
    with pytest.raises(ShapeError, match=r"audio\.input\.transcription\.delay"):
        check_accept_body(body)
