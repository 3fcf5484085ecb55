"""A call's tasks end when the call does, even when a cancel is swallowed.

Rolling restarts lost calls: a caller hung up right after their call was handed off, the
new owner saw the 404 and began to end the call, cancelled the call's heartbeat, and
waited for it for ever. On Python 3.11 `asyncio.wait_for` (inside every nats-py request,
so inside each lease renewal) returns the reply instead of raising when the cancel comes
in the same loop iteration as the reply; the heartbeat went on renewing the lease and the
job's delivery, so nobody else took the call and `call.ended` was never published.

And a worker's own resources end when it stops: its call-control client's connections are
closed then, not left open until the process exits.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from services.session.worker import SessionWorker
from shared.tasks import cancel_and_wait
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import STAYS_ON, until
from tests.stack import Stack


class HeartbeatLike:
    """A `while True` loop waiting on replies through `wait_for`, like the heartbeat's
    lease renewal (nats-py's request)."""

    def __init__(self) -> None:
        self.replies: list[asyncio.Future[None]] = []
        self.waiting = asyncio.Event()  # set each time it waits for a new reply

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply: asyncio.Future[None] = loop.create_future()
            self.replies.append(reply)
            self.waiting.set()
            await asyncio.wait_for(reply, timeout=30)

    async def next_wait(self) -> None:
        async with asyncio.timeout(2):
            await self.waiting.wait()
        self.waiting.clear()


async def test_a_cancel_that_meets_the_reply_is_swallowed_and_cancel_and_wait_still_stops():
    beat = HeartbeatLike()
    task = asyncio.create_task(beat.run())
    await beat.next_wait()

    # The reply and the cancel in the same loop iteration: exactly the heartbeat's race.
    beat.replies[0].set_result(None)
    task.cancel()
    if sys.version_info < (3, 12):
        await beat.next_wait()  # the cancel was swallowed: the loop went on
        assert len(beat.replies) == 2
        assert not task.done()

    async with asyncio.timeout(2):
        await cancel_and_wait(task)
    assert task.done()


# -- the rolling-restart loss, end to end (in-process workers, real NATS, the simulator) --

# Heartbeats every 1/3 s, so many renewals are in flight when everyone hangs up.
QUICK_LEASES = {"session_lease_ttl_s": 1, "session_ack_wait_s": 1.0}
CALLS = 30


@pytest.fixture
async def quick_stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    running = await Stack(nats_server.url, workers=0, settings_overrides=QUICK_LEASES).start()
    yield running
    await running.stop()


async def _add_worker(stack: Stack, capacity: int) -> SessionWorker:
    worker = await stack.add_worker(capacity=capacity)
    admission = getattr(stack.acceptor, "admission", None)
    if admission is not None:
        await admission.wait_for_free(lambda free: free >= capacity, timeout=10)
    return worker


@pytest.mark.slow
async def test_calls_hung_up_right_after_a_hand_off_all_end(quick_stack: Stack) -> None:
    stack = quick_stack
    assert stack.simulator is not None
    leaving = await _add_worker(stack, 2 * CALLS)
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(CALLS)]
    ids = [c.call_id for c in calls]
    await stack.events.wait_all(ids, "transcript.caller", timeout=30)
    staying = await _add_worker(stack, 2 * CALLS)

    draining = asyncio.create_task(leaving.stop())
    await until(lambda: staying.active_calls == CALLS, timeout=20)
    await draining
    for call in calls:  # all at once, just after the hand-offs
        await call.hang_up()

    await stack.events.wait_all(ids, "call.report", timeout=10)
    for call_id in ids:
        ended = stack.events.of_type(call_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["caller_hangup"]
    await until(lambda: staying.active_calls == 0, timeout=10)


async def test_a_stopped_worker_has_closed_its_call_control_client(stack: Stack) -> None:
    worker = stack.session_workers[0]
    client = worker._ctx.openai_client if worker._ctx is not None else None
    assert client is not None and not client.is_closed()

    await worker.stop()

    assert client.is_closed()
