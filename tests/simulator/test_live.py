"""The simulated GPT-Live surface, driven by the openai SDK itself (`client.live.*`): REST
bodies checked against the SDK's params, every sideband event against its server types,
the Live event contract of a whole scripted call, attach rules, reflected audio."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import websockets
from openai.types.webhooks import LiveTransportIncomingWebhookEvent

from simulator import CallerScript, Simulator
from simulator.live import check_server_event
from simulator.live.model import BYTES_PER_MS
from tests.simulator.conftest import API_KEY, WEBHOOK_SECRET, WebhookReceiver

SESSION: dict[str, Any] = {
    "type": "live",
    "model": "gpt-live-1",
    "instructions": "You are a friendly receptionist.",
    "audio": {"output": {"voice": "marin"}},
    "delegation": {
        "type": "responses",
        "responses": {
            "model": "gpt-5-mini",
            "tools": [
                {"type": "function", "name": "check_availability",
                 "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}},
            ],
        },
    },
}  # fmt: skip
SCRIPT = CallerScript(
    agent_speech_s=0.01,
    greeting_wait_s=5,
    steps=[
        {"say": "Hi, a haircut on Friday please.", "reply": "Let me check."},
        {"tool_call": {"name": "check_availability", "arguments": {"day": "friday"}},
         "reply": "Friday at 3 is free."},
        {"dtmf": "1#"},
        {"hangup": True},
    ],
)  # fmt: skip


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=API_KEY, base_url=simulator.base_url, max_retries=0
    ) as sdk:
        yield sdk


def attach_url(sim: Simulator, session_id: str, graceful: bool = True) -> str:
    base = sim.base_url.replace("http://", "ws://")
    return f"{base}/live/sessions/{session_id}/attach" + (
        "?graceful_close=true" if graceful else ""
    )


async def attach(sim: Simulator, session_id: str, graceful: bool = True):
    return await websockets.connect(
        attach_url(sim, session_id, graceful),
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
        max_size=1 << 22,
    )


async def collect(ws, until: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every event up to and including the first of type `until` (audio included)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if event["type"] == until:
                return seen


async def test_the_webhook_is_the_sdks_live_transport_incoming(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    session = await simulator.live.place_call(SCRIPT)
    await webhook_receiver.wait_count(1)
    headers, body = webhook_receiver.received[0]
    event = openai.OpenAI(api_key="x").webhooks.unwrap(body, headers, secret=WEBHOOK_SECRET)
    assert isinstance(event, LiveTransportIncomingWebhookEvent)
    assert event.data.session_id == session.session_id and event.data.type == "sip"
    assert {h.name for h in event.data.sip_headers} >= {"From", "To", "Call-ID"}


async def test_a_whole_call_over_the_sdk_every_event_of_the_sdks_types(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    session = await simulator.live.place_call(SCRIPT, send_webhooks=False)
    await client.live.sessions.accept(session.session_id, session=SESSION)  # type: ignore[arg-type]
    ws = await attach(simulator, session.session_id)
    await ws.send(json.dumps({"type": "session.instructions.append", "delegation_id": None,
                              "content": "Greet the caller: Bella Salon, hello!"}))  # fmt: skip
    events = await collect(ws, "session.delegation.created")
    inner: list[dict[str, Any]] = []
    while not any(e.get("type") == "response.output_item.done" for e in inner):
        event = json.loads(await ws.recv())
        events.append(event)
        if event["type"] == "response.event":
            inner.append(event["event"])
    call = next(e for e in inner if e["type"] == "response.output_item.done")["item"]
    assert (call["type"], call["name"]) == ("function_call", "check_availability")
    await ws.send(
        json.dumps(
            {
                "type": "response.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": '{"free": 3}',
                },
            }
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))
    events += await collect(ws, "session.closed")
    for event in events:
        check_server_event(event)  # strictly the SDK's types, unknown fields refused
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session.started"
    assert "session.instructions.appended" in kinds
    said = "".join(e["delta"] for e in events if e["type"] == "session.input_transcript.delta")
    spoken = "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta")
    assert said == "Hi, a haircut on Friday please."
    assert spoken.startswith("Bella Salon, hello!") and "Friday at 3 is free." in spoken
    assert [e["event"] for e in events if e["type"] == "transport.dtmf.received"] == ["1", "#"]
    closed = events[-1]
    assert closed["reason"] == "remote_hangup" and closed["session"]["id"] == session.session_id
    with pytest.raises(websockets.ConnectionClosedOK):  # graceful_close: a closing handshake
        await ws.recv()
    assert session.state == "ended" and session.agent_transcripts[-1] == "Friday at 3 is free."


async def test_reflected_audio_is_24khz_pcm16_at_the_real_rate(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    simulator.live.rules.audio_chunk_ms = 50
    session = await simulator.live.place_call(CallerScript(), send_webhooks=False)
    await client.live.sessions.accept(
        session.session_id, session={"type": "live", "model": "gpt-live-1"}
    )
    ws = await attach(simulator, session.session_id)
    loop = asyncio.get_running_loop()
    chunks: list[dict[str, Any]] = []
    started = loop.time()
    while len([c for c in chunks if c["type"] == "session.output_audio.delta"]) < 10:
        event = json.loads(await ws.recv())
        if event["type"] in ("session.input_audio.append", "session.output_audio.delta"):
            check_server_event(event)
            chunks.append(event)
    elapsed = loop.time() - started
    output = [c for c in chunks if c["type"] == "session.output_audio.delta"]
    assert all(len(base64.b64decode(c["delta"])) == 50 * BYTES_PER_MS for c in output)
    assert all(c["end_ms"] - c["start_ms"] == 50 for c in output)
    assert elapsed >= 0.4  # ten 50 ms chunks take ~0.45 s of real time, never less
    await ws.close()


async def test_rest_bodies_are_checked_against_the_sdk_params(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    session = await simulator.live.place_call(CallerScript(), send_webhooks=False)
    sid = session.session_id
    bad: list[dict[str, Any]] = [
        {**SESSION, "tools": []},
        {**SESSION, "audio": {"format": {"type": "audio/pcm", "rate": 24000}}},
        {**SESSION, "type": "realtime"},
        {"type": "live"},
    ]
    for body in bad:
        with pytest.raises(openai.BadRequestError):
            await client.live.sessions.accept(sid, session=body)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):  # a reject needs a SIP status 300-699
        await client.post(f"/live/sessions/{sid}/reject", body={}, cast_to=httpx.Response)
    with pytest.raises(openai.BadRequestError):
        await client.live.sessions.reject(sid, status_code=200)
    with pytest.raises(openai.NotFoundError):
        await client.live.sessions.accept("live_unknown", session=SESSION)  # type: ignore[arg-type]
    await client.live.sessions.reject(sid, status_code=486)
    assert (session.state, session.reject_status) == ("rejected", 486)


async def test_hangup_refer_and_session_close_end_with_session_closed(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    minimal = {"type": "live", "model": "gpt-live-1"}
    for how, reason in (("hangup", "close_requested"), ("refer", "remote_hangup"),
                        ("session.close", "close_requested")):  # fmt: skip
        session = await simulator.live.place_call(CallerScript(), send_webhooks=False)
        await client.live.sessions.accept(session.session_id, session=minimal)  # type: ignore[arg-type]
        ws = await attach(simulator, session.session_id)
        if how == "hangup":
            await client.live.sessions.hangup(session.session_id)
        elif how == "refer":
            await client.live.sessions.refer(session.session_id, target_uri="tel:+61290000000")
        else:
            await ws.send(json.dumps({"type": "session.close"}))
        closed = (await collect(ws, "session.closed"))[-1]
        assert closed["reason"] == reason
        await session.wait_for("ended")
        with pytest.raises(websockets.InvalidStatus) as gone:  # the session is over: 404
            await attach(simulator, session.session_id)
        assert gone.value.response.status_code == 404


async def test_attach_rules_second_attach_and_replay(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    simulator.live.rules.reflect_audio = False
    session = await simulator.live.place_call(CallerScript(), send_webhooks=False)
    await client.live.sessions.accept(
        session.session_id, session={"type": "live", "model": "gpt-live-1"}
    )
    first = await attach(simulator, session.session_id)
    assert (await collect(first, "session.started"))[-1]["session"]["id"] == session.session_id

    simulator.live.rules.second_attach = "refuse"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await attach(simulator, session.session_id)
    assert refused.value.response.status_code == 409

    await first.send(json.dumps({"type": "session.thinking.append", "content": "x",
                                 "delegation_id": None, "event_id": "c0"}))  # fmt: skip
    await collect(first, "session.thinking.appended")
    simulator.live.rules.second_attach = "allow"
    simulator.live.rules.replay_events = 1
    second = await attach(simulator, session.session_id)  # no session.started: not the first
    async with asyncio.timeout(5):
        replayed = json.loads(await second.recv())
    assert (replayed["type"], replayed["client_event_id"]) == ("session.thinking.appended", "c0")
    await second.send(json.dumps({"type": "session.thinking.append", "content": "x",
                                  "delegation_id": None, "event_id": "c1"}))  # fmt: skip
    for ws in (first, second):  # both observe
        ack = (await collect(ws, "session.thinking.appended"))[-1]
        assert ack["client_event_id"] == "c1"
    await second.send(json.dumps({"type": "session.instructions.append", "content": "x"}))
    error = (await collect(second, "error"))[-1]
    assert error["error"]["param"] == "delegation_id"  # required (nullable) by the SDK
    await first.close()
    await second.close()
    assert session.live  # detaching never ends the call
