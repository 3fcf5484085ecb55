"""`LiveSideband` on a real socket against the simulated GPT-Live: one scripted call seen
through the adapter, as the call runner sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest

from services.session.live import LiveSideband
from services.session.sideband import (
    AgentAudioStopped,
    AgentTranscript,
    CallEnded,
    CallerTranscript,
    CallGone,
    Dtmf,
    ResponseDone,
    ResponseStarted,
    SessionConfigured,
    Speak,
    ToolCallRequested,
    ToolOutput,
)
from shared import metrics
from shared.settings import Settings
from simulator import CallerScript, Simulator
from tests.stack import API_KEY, new_webhook_secret

SCRIPT = CallerScript(
    agent_speech_s=0.01,
    greeting_wait_s=5,
    steps=[
        {"say": "Is Friday free?", "reply": "Let me look."},
        {"tool_call": {"name": "check_availability", "arguments": {"day": "friday"}},
         "reply": "Friday at 3 is free."},
        {"dtmf": "5"},
        {"hangup": True},
    ],
)  # fmt: skip


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(API_KEY, new_webhook_secret(), "http://127.0.0.1:9/unused")
    await sim.start()
    sim.live.rules.audio_chunk_ms = 20  # 50 reflected frames a second each way
    yield sim
    await sim.stop()


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=API_KEY, base_url=simulator.base_url, max_retries=0
    ) as sdk:
        yield sdk


def settings(sim: Simulator) -> Settings:
    return Settings(_env_file=None, openai_api_key=API_KEY, openai_base_url=sim.base_url)  # type: ignore[call-arg]


def other_events() -> float:
    return metrics.SIDEBAND_EVENTS.labels("other")._value.get()


async def test_a_scripted_call_through_the_adapter(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    session = await simulator.live.place_call(SCRIPT, send_webhooks=False)
    await client.live.sessions.accept(
        session.session_id, session={"type": "live", "model": "gpt-live-1"}
    )
    sideband = LiveSideband(session.session_id, settings(simulator), client)
    await sideband.attach()
    others = other_events()
    assert await sideband.send(Speak("greeting", "Greet the caller: Bella Salon, hello!"))
    seen: list[object] = []
    async with asyncio.timeout(15):
        async for event in sideband.events():
            seen.append(event)
            if isinstance(event, ToolCallRequested):
                await sideband.send(ToolOutput(event.tool_call_id, '{"free": ["15:00"]}'))
                await sideband.send(Speak("continue"))
            if isinstance(event, CallEnded):
                break
    await sideband.close()

    assert isinstance(seen[0], SessionConfigured)
    meaningful = [e for e in seen if not isinstance(e, SessionConfigured)]
    tool = next(e for e in meaningful if isinstance(e, ToolCallRequested))
    assert (tool.name, tool.arguments) == ("check_availability", '{"day": "friday"}')
    assert [e.text for e in meaningful if isinstance(e, AgentTranscript)] == [
        "Bella Salon, hello!", "Let me look.", "Friday at 3 is free.",
    ]  # fmt: skip
    assert [e.text for e in meaningful if isinstance(e, CallerTranscript)] == ["Is Friday free?"]
    assert Dtmf("5") in meaningful
    assert sum(isinstance(e, AgentAudioStopped) for e in meaningful) == 3
    assert [e for e in meaningful if isinstance(e, ResponseStarted | ResponseDone)] == [
        ResponseStarted(), ResponseDone("completed"), ResponseStarted(), ResponseDone("completed"),
    ]  # fmt: skip
    assert meaningful[-1] == CallEnded("hangup")
    # Hundreds of reflected audio frames went by: none parsed into an event, none counted.
    assert other_events() == others
    outputs = [e for e in session.client_events if e["type"] == "response.item.create"]
    assert outputs[0]["item"]["output"] == '{"free": ["15:00"]}'

    with pytest.raises(CallGone):  # the session is over: a re-attach answers 404
        await sideband.attach()


async def test_hang_up_and_transfer_go_over_live_sessions(
    simulator: Simulator, client: openai.AsyncOpenAI
) -> None:
    for action in ("hang_up", "transfer"):
        session = await simulator.live.place_call(CallerScript(), send_webhooks=False)
        await client.live.sessions.accept(
            session.session_id, session={"type": "live", "model": "gpt-live-1"}
        )
        sideband = LiveSideband(session.session_id, settings(simulator), client)
        if action == "hang_up":
            assert await sideband.hang_up() == "200"
            assert session.close_reason == "close_requested"
        else:
            assert await sideband.transfer("tel:+61290000000") == "200"
            assert session.refer_targets == ["tel:+61290000000"]
        await session.wait_for("ended")
        with pytest.raises(CallGone):
            await sideband.attach()
