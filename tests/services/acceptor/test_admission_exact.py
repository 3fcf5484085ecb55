"""Exact admission through the whole stack: real nats-server, ingress, acceptor replicas,
session workers, and the simulator as OpenAI. Every count asserted is exact: a call is
refused for capacity only when the calls live or admitted fill the live workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from services.acceptor.main import Acceptor
from shared.reservations import Admission
from simulator import CallerScript, SimulatedCall
from switchboard.nats_server import NatsServer
from tests.stack import Stack

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_shedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count admission alone: a busy test machine must not shed their burst
    (shedding has its own test, test_shedding.py)."""
    monkeypatch.setenv("SWITCHBOARD_SHED_AFTER_S", "0")


DECISIONS = ("call.accepted", "call.rejected", "call.missed", "call.failed")
# Nor must a slow machine make a burst miss its deadline: these tests count places, so the
# acceptor gets 30 s to decide (the caller rings for 40 s) instead of OpenAI's 5.
DEADLINE_S = 30.0


async def admission_stack(nats_url: str, workers: int, capacity: int, **overrides: object) -> Stack:
    return await Stack(
        nats_url, workers=workers, capacity=capacity, ring_s=DEADLINE_S + 10,
        settings_overrides={"accept_deadline_s": DEADLINE_S, **overrides},
    ).start()  # fmt: skip


# Stays on the line, silent, until the test hangs up for it.
SILENT = CallerScript.model_validate({"name": "silent", "steps": []})


async def decisions(stack: Stack, calls: list[SimulatedCall], timeout: float = 60.0) -> list[str]:
    """Each call's decision event, in the calls' order (waits for all of them)."""

    def decided(call_id: str) -> list[str]:
        return [e.type for e in stack.events.by_call[call_id] if e.type in DECISIONS]

    async with asyncio.timeout(timeout):
        async with stack.events._changed:  # EventLog's condition: no polling, no sleep
            await stack.events._changed.wait_for(lambda: all(decided(c.call_id) for c in calls))
    outcomes = []
    for call in calls:
        [only] = decided(call.call_id)  # one decision per call, never two
        outcomes.append(only)
    return outcomes


def reasons(stack: Stack, calls: list[SimulatedCall], outcome: str) -> list[str]:
    return [
        e.data["reason"]
        for call in calls
        for e in stack.events.by_call[call.call_id]
        if e.type == outcome
    ]


async def burst(stack: Stack, count: int, script: CallerScript = SILENT) -> list[SimulatedCall]:
    assert stack.simulator is not None
    return list(await asyncio.gather(*(stack.simulator.place_call(script) for _ in range(count))))


def admission(acceptor: Acceptor | None) -> Admission:
    assert acceptor is not None and acceptor.admission is not None
    return acceptor.admission


async def sees_capacity(acceptor: Acceptor | None, capacity: int, booked: int = 0) -> None:
    await admission(acceptor).wait_for_view(
        lambda v: v.capacity == capacity and v.booked == booked and v.sure, timeout=30
    )


@pytest.mark.parametrize("calls", [50, 53])
async def test_a_burst_into_free_slots_is_accepted_in_full_and_only_the_excess_refused(
    nats_server: NatsServer, calls: int
) -> None:
    stack = await admission_stack(nats_server.url, workers=1, capacity=50)
    try:
        await sees_capacity(stack.acceptor, 50)
        placed = await burst(stack, calls)
        outcomes = await decisions(stack, placed)
        assert outcomes.count("call.accepted") == 50
        assert outcomes.count("call.rejected") == calls - 50
        assert reasons(stack, placed, "call.rejected") == ["no_capacity"] * (calls - 50)
        await stack.events.wait_all(
            [c.call_id for c, o in zip(placed, outcomes, strict=True) if o == "call.accepted"],
            "session.attached",
            timeout=60,
        )
        [worker] = stack.session_workers
        assert worker.active_calls == 50
    finally:
        await stack.stop()


async def test_four_workers_two_acceptors_fill_exactly_and_ended_calls_free_their_places(
    nats_server: NatsServer,
) -> None:
    stack = await admission_stack(nats_server.url, workers=4, capacity=10)
    second = Acceptor(stack.settings(), 0, "127.0.0.1")
    try:
        await second.start()
        for acceptor in (stack.acceptor, second):
            await sees_capacity(acceptor, 40)
        first = await burst(stack, 40)
        outcomes = await decisions(stack, first)
        assert outcomes.count("call.accepted") == 40, reasons(stack, first, "call.rejected")
        await stack.events.wait_all([c.call_id for c in first], "session.attached", timeout=60)
        attached = Counter(
            stack.events.of_type(c.call_id, "session.attached")[0].data["worker"] for c in first
        )
        assert sum(attached.values()) == 40 and max(attached.values()) <= 10
        assert all(w.active_calls <= 10 for w in stack.session_workers)

        over = await burst(stack, 5)
        assert await decisions(stack, over) == ["call.rejected"] * 5
        assert reasons(stack, over, "call.rejected") == ["no_capacity"] * 5

        for call in first[:5]:
            await call.hang_up()
        for acceptor in (stack.acceptor, second):
            await sees_capacity(acceptor, 40, booked=35)
        again = await burst(stack, 5)
        assert await decisions(stack, again) == ["call.accepted"] * 5
    finally:
        await second.stop()
        await stack.stop()


async def test_an_agent_limit_holds_exactly_under_a_burst(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text(
        'agents:\n  - name: salon\n    numbers: ["+61468002102"]\n'
        "    limits: {max_concurrent_calls: 5}\n"
    )
    stack = await admission_stack(
        nats_server.url, workers=1, capacity=20, switchboard_agents_file=agents
    )
    try:
        await sees_capacity(stack.acceptor, 20)
        salon = CallerScript.model_validate({"name": "salon", "to": "+61468002102", "steps": []})
        placed = await burst(stack, 8, salon)
        outcomes = await decisions(stack, placed)
        assert outcomes.count("call.accepted") == 5
        assert reasons(stack, placed, "call.rejected") == ["agent_limit"] * 3
    finally:
        await stack.stop()
