"""A worker killed while it holds calls: its places leave the admission count when its
report lapses, and its calls, re-attached elsewhere, are counted once. Real worker
processes, a real nats-server, the simulator as OpenAI."""

from __future__ import annotations

import asyncio
import signal

import pytest

from shared.reservations import Admission
from simulator import CallerScript
from tests.services.acceptor.test_admission_exact import decisions, reasons
from tests.services.session.conftest import Workers, wait_attached_by
from tests.stack import Stack

pytestmark = pytest.mark.slow

SILENT = CallerScript.model_validate({"name": "silent", "steps": []})


def admission(stack: Stack) -> Admission:
    assert stack.acceptor is not None and stack.acceptor.admission is not None
    return stack.acceptor.admission


async def test_a_killed_workers_calls_move_and_are_counted_once(
    bare_stack: Stack, workers: Workers
) -> None:
    stack = bare_stack
    assert stack.simulator is not None
    doomed = await workers.start("doomed", capacity=5)
    held = [await stack.simulator.place_call(SILENT) for _ in range(4)]
    await stack.events.wait_all([c.call_id for c in held], "session.attached", timeout=30)
    survivor = await workers.start("survivor", capacity=10)
    await admission(stack).wait_for_view(lambda v: v.capacity == 15 and v.booked == 4)

    doomed.signal(signal.SIGKILL)
    for call in held:
        await wait_attached_by(stack, call.call_id, "survivor", timeout=30)
    # The dead worker's places leave the count once its report has lapsed for sure.
    await admission(stack).wait_for_view(lambda v: v.capacity == 10 and v.sure, timeout=40)

    more = list(await asyncio.gather(*(stack.simulator.place_call(SILENT) for _ in range(6))))
    assert await decisions(stack, more) == ["call.accepted"] * 6  # 10 - 4 moved calls
    over = await stack.simulator.place_call(SILENT)
    assert await decisions(stack, [over]) == ["call.rejected"]
    assert reasons(stack, [over], "call.rejected") == ["no_capacity"]
    view = admission(stack).standing()
    assert view.booked == 10 and not any(view.orphans.values())
    await survivor.wait_metric("switchboard_session_active_calls", 10, timeout=30)

    for call in held[:2]:  # calls that moved are released from the book they moved to
        await call.hang_up()
    await admission(stack).wait_for_view(lambda v: v.booked == 8, timeout=30)
