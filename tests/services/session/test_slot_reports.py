"""Slot reports: calls coming and going are coalesced, a drain is reported at once.

Each report wakes every acceptor and costs nats-server a KV write, and admission decides on
its books, not on a report's counts: so a worker reports changing counts at most every
`SLOT_REPORT_COALESCE_S`, while its drain (it takes no more calls) goes out at once. Here
the coalescing window is stretched far beyond the test, so whatever is reported inside it
was reported at once.
"""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.session import worker as worker_module
from shared.streams import WORKER_SLOTS_BUCKET
from tests.services.session.conftest import STAYS_ON
from tests.stack import Stack


@pytest.fixture
def long_coalescing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "SLOT_REPORT_COALESCE_S", 60.0)


async def _reports(stack: Stack, worker_id: str) -> tuple[list[dict[str, object]], Client]:
    """Every report the worker writes from now on (a plain subscriber on its KV subject)."""
    seen: list[dict[str, object]] = []
    nc = await nats.connect(stack.nats_url)

    async def on_report(msg: Msg) -> None:
        if msg.data:
            seen.append(json.loads(msg.data))

    await nc.subscribe(f"$KV.{WORKER_SLOTS_BUCKET}.{worker_id}", cb=on_report)
    await nc.flush()
    return seen, nc


@pytest.mark.usefixtures("long_coalescing")
async def test_calls_coming_are_coalesced_and_a_drain_is_reported_at_once(stack: Stack) -> None:
    assert stack.simulator is not None
    worker = stack.session_workers[0]
    reports, nc = await _reports(stack, worker.worker_id)
    try:
        calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(3)]
        await stack.events.wait_all([c.call_id for c in calls], "transcript.caller", timeout=20)
        stopping = asyncio.create_task(worker.stop())  # keeps the calls: nobody to take them
        await stack.events.wait_until(lambda: any(r["draining"] for r in reports), timeout=10)
        for call in calls:
            await call.hang_up()
        await stopping
    finally:
        await nc.close()

    drained = next(i for i, r in enumerate(reports) if r["draining"])
    # Three calls came, and not one report of them until the drain, which said all at once.
    assert all(r["active"] == 0 for r in reports[:drained])
    assert reports[drained] | {"draining": True, "active": 3, "free": 0} == reports[drained]
