"""Worker processes killed or paused mid-call: the calls go on under another worker.

Real `switchboard session` processes, a real nats-server, the simulator as OpenAI.
"""

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


async def test_calls_of_a_killed_worker_are_reattached_elsewhere(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    doomed = await workers.start("doomed", capacity=20)  # headroom for admission
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(10)]
    ids = [c.call_id for c in calls]
    await stack.events.wait_all(ids, "transcript.caller", timeout=30)
    assert all(attaches(stack, i)[0].data["worker"] == "doomed" for i in ids)

    survivor = await workers.start("survivor", capacity=20)
    doomed.signal(signal.SIGKILL)
    for call_id in ids:
        await wait_attached_by(stack, call_id, "survivor", timeout=30)

    for call in calls:
        again = attaches(stack, call.call_id)[-1]
        assert again.data["attempt"] > 1
        assert call.live
        assert greetings(call) == 1, call.client_events

    for call in calls:
        await call.hang_up()
    await stack.events.wait_all(ids, "call.report", timeout=30)
    for call_id in ids:
        ended = stack.events.of_type(call_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["caller_hangup"]
        assert_seq_continuous(stack.events.by_call[call_id])
        report = stack.events.of_type(call_id, "call.report")[0].data
        assert report["attempts"] == 2
        assert report["turns"] == 1  # the transcript spans both workers
    await survivor.wait_metric("switchboard_session_active_calls", 0)


async def test_a_paused_owner_cannot_act_on_the_call_after_it_resumes(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    stale = await workers.start("stale", capacity=5)
    call = await stack.simulator.place_call(STAYS_ON)
    await stack.events.wait_for(call.call_id, "transcript.caller", timeout=30)

    successor = await workers.start("successor", capacity=5)
    stale.signal(signal.SIGSTOP)  # past its lease: the job is redelivered to the successor
    await wait_attached_by(stack, call.call_id, "successor", timeout=30)
    seen_before_resume = len(stack.events.by_call[call.call_id])

    stale.signal(signal.SIGCONT)
    # The stale worker notices (its renewal fails) and lets go without touching the call.
    await stale.wait_metric("switchboard_session_active_calls", 0, timeout=20)
    assert call.live
    assert stale.process.poll() is None

    await call.hang_up()
    await stack.events.wait_for(call.call_id, "call.report", timeout=30)
    events = sorted(stack.events.by_call[call.call_id], key=lambda e: e.seq)
    assert_seq_continuous(events)
    after = events[seen_before_resume:]
    assert [e.type for e in after] == ["call.ended", "call.report"]
    assert [e.data.get("worker") for e in attaches(stack, call.call_id)] == [
        "stale",
        "successor",
    ]
    assert greetings(call) == 1
    assert call.end_reason == "caller_hangup"  # nobody hung up on the caller
    await successor.wait_metric("switchboard_session_active_calls", 0)
