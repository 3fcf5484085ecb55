"""NATS killed and restarted while calls arrive: once the workers are back no call is
refused for capacity, and every call is decided, accepted in time or recorded missed."""

from __future__ import annotations

import asyncio

import nats
import pytest

from shared.events import read_call_events
from simulator import CallerScript, SimulatedCall
from switchboard.nats_server import NatsServer
from tests.services.acceptor.test_admission_exact import DECISIONS, decisions, sees_capacity
from tests.stack import Stack

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_shedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission through an outage, alone: webhooks that waited through it are not shed
    here (README: shedding after an outage is the documented price of shedding)."""
    monkeypatch.setenv("SWITCHBOARD_SHED_AFTER_S", "0")


SILENT = CallerScript.model_validate({"name": "silent", "steps": []})


async def decided_in_stream(
    nats_url: str, calls: list[SimulatedCall], timeout: float
) -> list[tuple[str, dict]]:
    """Each call's one decision, read back from the events stream (a live subscription
    may miss events published while it reconnects)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found: dict[str, tuple[str, dict]] = {}
        async with asyncio.timeout(timeout):
            while len(found) < len(calls):
                for call in calls:
                    if call.call_id in found:
                        continue
                    events = await read_call_events(js, call.call_id)
                    decided = [(e.type, e.data) for e in events if e.type in DECISIONS]
                    if decided:
                        assert len(decided) == 1, decided
                        found[call.call_id] = decided[0]
                await asyncio.sleep(0.2)  # polling JetStream's own state, with a timeout
        return [found[call.call_id] for call in calls]
    finally:
        await nc.close()


async def test_a_nats_restart_while_calls_arrive_refuses_none_for_capacity(
    nats_server: NatsServer,
) -> None:
    stack = await Stack(nats_server.url, workers=1, capacity=30).start()
    try:
        assert stack.simulator is not None
        await sees_capacity(stack.acceptor, 30)
        before = [await stack.simulator.place_call(SILENT) for _ in range(3)]
        assert await decisions(stack, before) == ["call.accepted"] * 3

        nats_server.kill()
        during = [await stack.simulator.place_call(SILENT) for _ in range(5)]  # ingress: 503
        await asyncio.to_thread(nats_server.start)  # same store, same port
        after = [await stack.simulator.place_call(SILENT) for _ in range(5)]

        calls = during + after
        outcomes = await decided_in_stream(nats_server.url, calls, timeout=90)
        for outcome, data in outcomes:
            assert outcome in ("call.accepted", "call.missed"), (outcome, data)
            if outcome == "call.missed":
                assert data["reason"] == "deadline"
        accepted = [o for o, _ in outcomes].count("call.accepted")
        assert accepted >= len(after)  # calls after the restart are all answered

        later = [await stack.simulator.place_call(SILENT) for _ in range(3)]
        later_outcomes = await decided_in_stream(nats_server.url, later, timeout=60)
        assert [o for o, _ in later_outcomes] == ["call.accepted"] * 3
    finally:
        await stack.stop()
