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
from collections.abc import Callable

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


class Reports:
    """Every report one worker writes from a moment on (a plain subscriber on its KV key)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        self._arrived = asyncio.Condition()
        self._nc: Client | None = None

    async def start(self, nats_url: str, worker_id: str) -> Reports:
        self._nc = await nats.connect(nats_url)

        async def on_report(msg: Msg) -> None:
            if msg.data:  # (a deleted key has none)
                async with self._arrived:
                    self.seen.append(json.loads(msg.data))
                    self._arrived.notify_all()

        await self._nc.subscribe(f"$KV.{WORKER_SLOTS_BUCKET}.{worker_id}", cb=on_report)
        await self._nc.flush()
        return self

    async def wait_until(self, predicate: Callable[[list[dict[str, object]]], bool]) -> None:
        async with asyncio.timeout(10), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self.seen))

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.close()


@pytest.mark.usefixtures("long_coalescing")
async def test_calls_coming_are_coalesced_and_a_drain_is_reported_at_once(stack: Stack) -> None:
    assert stack.simulator is not None
    worker = stack.session_workers[0]
    log = await Reports().start(stack.nats_url, worker.worker_id)
    try:
        calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(3)]
        await stack.events.wait_all([c.call_id for c in calls], "transcript.caller", timeout=20)
        stopping = asyncio.create_task(worker.stop())  # keeps the calls: nobody to take them
        await log.wait_until(lambda seen: any(r["draining"] for r in seen))
        for call in calls:
            await call.hang_up()
        await stopping
    finally:
        await log.stop()
    reports = log.seen

    drained = next(i for i, r in enumerate(reports) if r["draining"])
    # Three calls came, and not one report of them until the drain, which said all at once.
    assert all(r["active"] == 0 for r in reports[:drained])
    assert reports[drained] | {"draining": True, "active": 3, "free": 0} == reports[drained]


@pytest.mark.usefixtures("long_coalescing")
async def test_an_idle_worker_reports_every_period_whatever_the_coalescing(stack: Stack) -> None:
    worker = stack.session_workers[0]
    log = await Reports().start(stack.nats_url, worker.worker_id)
    try:
        # No call, so nothing to coalesce: a report every period, not every window.
        await log.wait_until(lambda seen: len(seen) >= 2)
    finally:
        await log.stop()
    assert all(r["active"] == 0 and not r["draining"] for r in log.seen)
