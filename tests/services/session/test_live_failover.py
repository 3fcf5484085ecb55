"""GPT-Live calls when worker processes die or leave: SIGKILL → re-attached elsewhere
(nothing replayed by the attach: the call's events tell the next owner what it needs),
SIGTERM → handed off to a worker with room. Greeted once; one `call.ended` each."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator import CallerScript
from simulator.live import LiveSession
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import (
    FAST_FAILOVER,
    Workers,
    assert_seq_continuous,
    attaches,
    wait_attached_by,
)
from tests.services.session.live_bench import greetings
from tests.stack import Stack

pytestmark = pytest.mark.slow

LIVE_NUMBER = "+61468002103"
AGENTS = f"""agents:
  - name: reminders
    api: live
    numbers: ["{LIVE_NUMBER}"]
    voice: marin
    instructions: "You confirm appointments."
    greeting: "Hi, this is Bella Salon."
"""
# Listens to the greeting, says one thing, then stays on (silent) until the test hangs up.
STAYS_ON = CallerScript.model_validate(
    {"name": "stays-on", "agent_speech_s": 0.01,
     "steps": [{"say": "Hello, I need a table.", "reply": "Sure."}]}
)  # fmt: skip


@pytest.fixture
async def live_stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    overrides = {**FAST_FAILOVER, "switchboard_agents_file": agents}
    running = await Stack(nats_server.url, workers=0, settings_overrides=overrides).start()
    assert running.simulator is not None
    running.simulator.live.rules.audio_chunk_ms = 100  # reflected audio flows throughout
    yield running
    await running.stop()


@pytest.fixture
async def workers(live_stack: Stack, tmp_path: Path) -> AsyncIterator[Workers]:
    started = Workers(live_stack, tmp_path)
    yield started
    started.stop_all()


async def place(stack: Stack, count: int) -> list[LiveSession]:
    assert stack.simulator is not None
    sessions = [
        await stack.simulator.live.place_call(STAYS_ON, to=LIVE_NUMBER) for _ in range(count)
    ]
    await stack.events.wait_all([s.session_id for s in sessions], "transcript.caller", timeout=30)
    return sessions


async def hang_up_all(stack: Stack, sessions: list[LiveSession]) -> None:
    for session in sessions:
        await session.hang_up()
    await stack.events.wait_all([s.session_id for s in sessions], "call.report", timeout=30)
    for session in sessions:
        ended = stack.events.of_type(session.session_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["caller_hangup"]
        assert_seq_continuous(stack.events.by_call[session.session_id])


async def test_live_calls_of_a_killed_worker_are_reattached_elsewhere(
    live_stack: Stack, workers: Workers
) -> None:
    stack = live_stack
    doomed = await workers.start("doomed", capacity=20)
    sessions = await place(stack, 10)
    ids = [s.session_id for s in sessions]
    assert all(attaches(stack, i)[0].data["worker"] == "doomed" for i in ids)

    survivor = await workers.start("survivor", capacity=20)
    doomed.signal(signal.SIGKILL)
    for call_id in ids:
        await wait_attached_by(stack, call_id, "survivor", timeout=30)

    for session in sessions:
        again = attaches(stack, session.session_id)[-1]
        assert again.data["attempt"] > 1
        assert session.live and session.attach_count >= 2
        assert greetings(session) == 1, session.client_events
    await hang_up_all(stack, sessions)
    for call_id in ids:
        report = stack.events.of_type(call_id, "call.report")[0].data
        assert (report["attempts"], report["turns"], report["api"]) == (2, 1, "live")
    await survivor.wait_metric("switchboard_session_active_calls", 0)


async def test_sigterm_hands_live_calls_to_a_worker_with_room(
    live_stack: Stack, workers: Workers
) -> None:
    stack = live_stack
    leaving = await workers.start("leaving", capacity=20)
    sessions = await place(stack, 5)
    staying = await workers.start("staying", capacity=20)

    leaving.signal(signal.SIGTERM)
    for session in sessions:
        await wait_attached_by(stack, session.session_id, "staying", timeout=30)
    assert await leaving.wait_exit(timeout=30) == 0

    for session in sessions:
        assert session.live and greetings(session) == 1
        first, second = attaches(stack, session.session_id)
        assert (first.data["worker"], second.data["worker"]) == ("leaving", "staying")
        detached = stack.events.of_type(session.session_id, "session.detached")
        assert [e.data["reason"] for e in detached] == ["handoff"]
        assert first.seq < detached[0].seq < second.seq  # never two owners at once
    await hang_up_all(stack, sessions)
    await staying.wait_metric("switchboard_session_active_calls", 0)
