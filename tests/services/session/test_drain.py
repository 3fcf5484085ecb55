"""SIGTERM on a worker process: calls handed off when another worker has room, kept
otherwise until they end (or until the drain deadline, then handed off as they are)."""

from __future__ import annotations

import signal

import pytest

from tests.services.session.conftest import (
    STAYS_ON,
    Workers,
    assert_seq_continuous,
    attaches,
    greetings,
    wait_attached_by,
)
from tests.stack import Stack

pytestmark = pytest.mark.slow


async def _hang_up_all(stack: Stack, calls: list) -> None:
    for call in calls:
        await call.hang_up()
    await stack.events.wait_all([c.call_id for c in calls], "call.report", timeout=30)
    for call in calls:
        ended = stack.events.of_type(call.call_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["caller_hangup"]
        assert_seq_continuous(stack.events.by_call[call.call_id])


async def test_sigterm_hands_every_call_to_a_worker_with_room(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    leaving = await workers.start("leaving", capacity=20)
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(5)]
    ids = [c.call_id for c in calls]
    await stack.events.wait_all(ids, "transcript.caller", timeout=30)
    staying = await workers.start("staying", capacity=20)

    leaving.signal(signal.SIGTERM)
    for call_id in ids:
        await wait_attached_by(stack, call_id, "staying", timeout=30)
    assert await leaving.wait_exit(timeout=30) == 0

    for call in calls:
        assert call.live
        assert greetings(call) == 1
        first, second = attaches(stack, call.call_id)
        assert (first.data["worker"], second.data["worker"]) == ("leaving", "staying")
        assert second.data["attempt"] == 2
        detached = stack.events.of_type(call.call_id, "session.detached")
        assert [e.data["reason"] for e in detached] == ["handoff"]
        assert first.seq < detached[0].seq < second.seq  # never two owners at once
    await _hang_up_all(stack, calls)
    await staying.wait_metric("switchboard_session_active_calls", 0)


async def test_sigterm_alone_keeps_the_calls_until_they_end(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    only = await workers.start("only", capacity=20)
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(3)]
    ids = [c.call_id for c in calls]
    await stack.events.wait_all(ids, "transcript.caller", timeout=30)

    only.signal(signal.SIGTERM)
    await only.wait_metric("switchboard_draining", 1)
    assert await only.readiness() == 503
    assert only.process.poll() is None  # still serving its calls
    assert await only.metric("switchboard_session_active_calls") == 3

    await _hang_up_all(stack, calls)
    assert await only.wait_exit(timeout=30) == 0
    for call_id in ids:
        assert [e.data["worker"] for e in attaches(stack, call_id)] == ["only"]
        assert stack.events.of_type(call_id, "session.detached") == []


async def test_at_the_drain_deadline_calls_are_handed_off_for_the_next_worker(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    old = await workers.start("old", capacity=20, drain_deadline_s=1.0)
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(2)]
    ids = [c.call_id for c in calls]
    await stack.events.wait_all(ids, "transcript.caller", timeout=30)

    old.signal(signal.SIGTERM)
    assert await old.wait_exit(timeout=30) == 0
    assert all(call.live for call in calls)  # unattended for a moment, not dropped

    await workers.start("new", capacity=20)
    for call_id in ids:
        await wait_attached_by(stack, call_id, "new", timeout=30)
    assert all(greetings(call) == 1 for call in calls)
    await _hang_up_all(stack, calls)
