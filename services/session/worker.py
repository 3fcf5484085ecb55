"""The session worker's job loop, whole in one file.

Claim a call only when a slot is free (fetch one job at a time: a prefetched job would
get no heartbeat and be run twice), run it as a task, report free slots for the
acceptor's admission control, and on SIGTERM stop claiming and drain.
"""

from __future__ import annotations

import asyncio
import json
import logging

import nats.errors
from nats.aio.client import Client
from nats.js.api import Header
from pydantic import ValidationError

from services.session.call import CallRunner, WorkerContext
from shared import metrics
from shared.calls import SessionJob
from shared.events import CallEventPublisher
from shared.nats import connect
from shared.openai_client import call_control_client
from shared.settings import Settings
from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    WORKER_SLOTS_BUCKET,
    declare_topology,
)

log = logging.getLogger(__name__)

SLOT_REPORT_PERIOD_S = 2.0
SLOT_REPORT_TTL_S = 10


class SessionWorker:
    def __init__(self, settings: Settings, capacity: int, worker_id: str) -> None:
        self.settings = settings
        self.capacity = capacity
        self.worker_id = worker_id
        self.draining = False
        self._nc: Client | None = None
        self._ctx: WorkerContext | None = None
        self._free = asyncio.Semaphore(capacity)
        self._runners: dict[str, CallRunner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        metrics.SESSION_CAPACITY.set(capacity)
        self._update_gauges()

    @property
    def active_calls(self) -> int:
        return len(self._runners)

    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        self._nc = await connect(
            self.settings.nats_servers, f"switchboard-session-{self.worker_id}"
        )
        js = self._nc.jetstream()
        await declare_topology(
            js,
            replicas=self.settings.nats_replicas,
            session_ack_wait_s=self.settings.session_ack_wait_s,
        )
        self._ctx = WorkerContext(
            settings=self.settings,
            worker_id=self.worker_id,
            js=js,
            leases=await js.key_value(CALL_LEASES_BUCKET),
            events=CallEventPublisher(js),
            openai_client=call_control_client(self.settings),
        )
        self._loops = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._report_slots()),
        ]

    async def _claim_loop(self) -> None:
        assert self._ctx is not None
        subscription = await self._ctx.js.pull_subscribe_bind(
            durable=SESSION_CONSUMER, stream=SESSIONS_STREAM
        )
        while not self.draining:
            await self._free.acquire()
            if self.draining:
                self._free.release()
                break
            try:
                messages = await subscription.fetch(1, timeout=2.0)
            except nats.errors.TimeoutError:
                self._free.release()
                continue
            except Exception as error:  # disconnected: wait for the reconnect
                self._free.release()
                log.warning("fetch failed: %s", type(error).__name__)
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                task = asyncio.create_task(self._run(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, message: nats.aio.msg.Msg) -> None:
        assert self._ctx is not None
        try:
            try:
                job = SessionJob.model_validate_json(message.data)
            except ValidationError:
                log.error("malformed session job dropped")
                await message.term()
                return
            runner = CallRunner(job, message, self._ctx)
            self._runners[job.call_id] = runner
            self._update_gauges()
            try:
                await runner.run()
            finally:
                self._runners.pop(job.call_id, None)
        except Exception:
            log.exception("call runner failed")
        finally:
            self._free.release()
            self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.SESSION_ACTIVE_CALLS.set(self.active_calls)
        metrics.SESSION_FREE_SLOTS.set(0 if self.draining else self.capacity - self.active_calls)

    async def _report_slots(self) -> None:
        """Free slots in the `worker_slots` bucket, TTL'd so a dead worker's vanish."""
        assert self._ctx is not None
        while True:
            free = 0 if self.draining else self.capacity - self.active_calls
            value = {"free": free, "capacity": self.capacity, "draining": self.draining}
            try:
                await self._ctx.js.publish(
                    f"$KV.{WORKER_SLOTS_BUCKET}.{self.worker_id}",
                    json.dumps(value).encode(),
                    msg_ttl=SLOT_REPORT_TTL_S,
                    headers={Header.ROLLUP.value: "sub"},
                )
            except Exception as error:
                log.warning("slot report failed: %s", type(error).__name__)
            await asyncio.sleep(SLOT_REPORT_PERIOD_S)

    async def stop(self) -> None:
        """Stop claiming; let calls end within the drain deadline; hand off the rest."""
        self.draining = True
        metrics.DRAINING.set(1)
        self._update_gauges()
        for loop in self._loops[:1]:
            loop.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self.settings.session_drain_deadline_s
            )
            for runner in list(self._runners.values()):
                await runner.hand_off()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._nc is not None:
            await self._nc.drain()
