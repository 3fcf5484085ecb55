"""The session worker: claim calls while a slot is free, report slots, drain on SIGTERM.

(Over 350 lines: claiming, slot reports and draining share the worker's slots and
runners; like arq's worker, its whole loop reads in one file.)

Claiming fetches one job at a time and only when a slot is free: a prefetched job would
get no heartbeat and be run twice. Free slots go to the `worker_slots` bucket for the
acceptor's admission control (and for draining workers, below).

Draining (SIGTERM): readiness turns 503 and claiming stops. Each live call is handed off
(lease released, job returned with `nak`) only while other workers report free slots, so
another worker re-attaches at once. A hand-off nobody took is visible (the lease stays
absent, the job pending): the draining worker fetches it back and keeps serving it. Calls
it cannot hand off it keeps until they end or the drain deadline passes; at the deadline
the rest are handed off whatever the reports say, to be picked up by the next worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from services.session.lease import CallLease
from services.session.runner import CallRunner, RunOutcome, WorkerContext
from services.session.slots import SlotReport, free_elsewhere, handoff_budget
from services.session.tools import ToolRunner
from shared import metrics
from shared.admission import BookReleases
from shared.calls import SessionJob
from shared.events import CallEventPublisher
from shared.kv_keys import live_keys
from shared.logging import bind
from shared.nats import ConnectionWatch, connect
from shared.openai_client import call_control_client
from shared.settings import Settings
from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    WORKER_SLOTS_BUCKET,
    declare_configured_topology,
)
from shared.tasks import cancel_and_wait, wait_a_while

log = logging.getLogger(__name__)

SLOT_REPORT_PERIOD_S = 2.0
SLOT_REPORT_TTL_S = 10
# Calls coming and going only move a report's counts, which admission does not decide on
# (it books calls in `admissions`): reported at most twice a second. A drain is news it
# decides on (the worker takes no more calls), sent at most this soon after the last report.
SLOT_REPORT_COALESCE_S = 0.5
SLOT_REPORT_MIN_GAP_S = 0.1
# A report that failed (NATS reconnecting, a leader election) is retried this soon: the
# acceptor waits for it rather than refusing, and each retry is one small publish.
SLOT_REPORT_RETRY_S = 0.25
# A report older than this is ignored by draining workers (its worker may be gone).
SLOT_REPORT_MAX_AGE_S = 3 * SLOT_REPORT_PERIOD_S
FETCH_TIMEOUT_S = 1.0
# A hand-off whose lease nobody created within this long is taken back.
HANDOFF_CONFIRM_S = 3.0
DRAIN_TICK_S = 0.25


class SessionWorker:
    def __init__(self, settings: Settings, capacity: int, worker_id: str) -> None:
        self.settings = settings
        self.capacity = capacity
        self.worker_id = worker_id
        self._nc: Client | None = None
        self.watch = ConnectionWatch()
        self._ctx: WorkerContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._slots: KeyValue | None = None
        self._free = asyncio.Semaphore(capacity)
        self._runners: dict[str, CallRunner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claimer: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # a call started or finished
        self._slots_dirty = asyncio.Event()
        self._draining = asyncio.Event()  # set once, by stop(); reported without coalescing
        self._handed_off: dict[str, float] = {}  # call id → when (monotonic), not yet taken
        self._kept: set[str] = set()  # calls taken back: not handed off again
        self._stopped = False
        metrics.SESSION_CAPACITY.set(capacity)
        self._update_gauges()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    @property
    def active_calls(self) -> int:
        return len(self._runners)

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else max(0, self.capacity - self.active_calls)

    @property
    def nc(self) -> Client | None:
        """The worker's NATS connection, once started."""
        return self._nc

    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def is_alive(self) -> bool:
        """Not cut off from NATS for longer than a lease, nor closed for good."""
        return self.watch.alive(grace_s=self.settings.session_lease_ttl_s)

    async def start(self) -> None:
        bind(worker=self.worker_id)  # every line of this worker's tasks names it
        nc = self._nc = await connect(
            self.settings.nats_servers, f"switchboard-session-{self.worker_id}", self.watch
        )
        js = nc.jetstream()
        await declare_configured_topology(js, self.settings)
        self._ctx = WorkerContext(
            settings=self.settings,
            worker_id=self.worker_id,
            nc=nc,
            js=js,
            leases=await js.key_value(CALL_LEASES_BUCKET),
            events=CallEventPublisher(js),
            openai_client=call_control_client(self.settings),
            tools=await ToolRunner.for_worker(
                nc, self.worker_id, self.settings.tool_reply_max_bytes
            ),
            bookings=BookReleases(js),
        )
        self._slots = await js.key_value(WORKER_SLOTS_BUCKET)
        self._sub = await js.pull_subscribe_bind(durable=SESSION_CONSUMER, stream=SESSIONS_STREAM)
        self._reporter = asyncio.create_task(self._report_slots())
        self._claimer = asyncio.create_task(self._claim_loop())

    # -- claiming ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.draining:
            await self._free.acquire()
            if self.draining:
                self._free.release()
                break
            message = await self._fetch_one()
            if message is None:
                self._free.release()
                continue
            self._start(message)

    async def _fetch_one(self, timeout: float = FETCH_TIMEOUT_S) -> Msg | None:
        assert self._sub is not None
        try:
            messages = await self._sub.fetch(1, timeout=timeout)
        except nats.errors.TimeoutError:
            return None
        except Exception as error:  # disconnected: wait for the reconnect
            log.warning("fetch failed: %s", type(error).__name__)
            await asyncio.sleep(1.0)
            return None
        return messages[0] if messages else None

    def _start(self, message: Msg) -> None:
        """Run a claimed job; its slot (already taken) is released when the run ends."""
        task = asyncio.create_task(self._run(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: Msg) -> None:
        assert self._ctx is not None
        call_id = None
        try:
            try:
                job = SessionJob.model_validate_json(message.data)
            except ValidationError:
                log.error("malformed session job dropped")
                await message.term()
                return
            call_id = job.call_id
            runner = CallRunner(job, message, self._ctx)
            self._runners[call_id] = runner
            self._calls_changed()
            outcome = await runner.run()  # an ended call's booking is released by then
            if call_id in self._handed_off:
                if outcome == RunOutcome.HANDED_OFF:
                    self._handed_off[call_id] = time.monotonic()  # confirm from the nak on
                else:  # it ended (or was lost) instead: nothing to confirm or take back
                    self._handed_off.pop(call_id, None)
        except Exception:
            log.exception("call runner failed")
        finally:
            if call_id is not None:
                self._runners.pop(call_id, None)
            self._free.release()
            self._calls_changed()

    def _calls_changed(self) -> None:
        self._update_gauges()
        self._changed.set()
        self._slots_dirty.set()

    def _update_gauges(self) -> None:
        metrics.SESSION_ACTIVE_CALLS.set(self.active_calls)
        metrics.SESSION_FREE_SLOTS.set(self.free_slots)

    # -- slot reports ------------------------------------------------------------------------

    async def _report_slots(self) -> None:
        """Free slots in `worker_slots`, TTL'd so a dead worker's vanish; sent after a
        change (coalesced, a drain at once) and every SLOT_REPORT_PERIOD_S. Each report costs
        a write here, a KV write in nats-server and a wake in every acceptor, which hears
        every worker: with twenty busy workers, 200 wakes a second at ten reports each."""
        assert self._ctx is not None
        while True:
            self._slots_dirty.clear()
            if not await self._publish_slots():
                await asyncio.sleep(SLOT_REPORT_RETRY_S)  # back-off, not synchronisation
                continue
            await wait_a_while(self._slots_dirty, SLOT_REPORT_PERIOD_S)
            if self._slots_dirty.is_set():  # a change, not the period: later ones join it
                await wait_a_while(self._draining, SLOT_REPORT_COALESCE_S)  # rate limit
            await asyncio.sleep(SLOT_REPORT_MIN_GAP_S)  # rate limit, not synchronisation

    async def _publish_slots(self) -> bool:
        """One report; False when it could not be made (retried soon)."""
        assert self._ctx is not None
        report = SlotReport(
            worker=self.worker_id,
            free=self.free_slots,
            capacity=self.capacity,
            active=self.active_calls,
            draining=self.draining,
            at=time.time(),
            # Calls no admission book holds (a job made before books): admission counts them.
            unbooked=sum(1 for r in self._runners.values() if r.job.booking is None),
        )
        try:
            await self._ctx.js.publish(
                f"$KV.{WORKER_SLOTS_BUCKET}.{self.worker_id}",
                report.to_json(),
                msg_ttl=SLOT_REPORT_TTL_S,
                headers={Header.ROLLUP.value: "sub"},
                timeout=1.0,
            )
        except Exception as error:
            log.warning("slot report failed: %s", type(error).__name__)
            return False
        return True

    async def _slot_reports(self) -> list[SlotReport]:
        assert self._slots is not None
        assert self._ctx is not None
        reports = []
        for key in await live_keys(self._ctx.js, WORKER_SLOTS_BUCKET):
            try:
                entry = await self._slots.get(key)
            except KeyNotFoundError:
                continue
            report = SlotReport.parse(key, entry.value)
            if report is not None:
                reports.append(report)
        return reports

    # -- draining ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop claiming, hand calls off or keep them until the deadline, then disconnect."""
        if self._stopped:
            return
        self._stopped = True
        self._draining.set()
        metrics.DRAINING.set(1)
        self._calls_changed()
        if self._claimer is not None:
            # It stops by itself after its current fetch; a stuck one is cancelled.
            _, pending = await asyncio.wait({self._claimer}, timeout=FETCH_TIMEOUT_S + 1.0)
            await cancel_and_wait(*pending)
        if self._ctx is not None:
            try:
                await self._drain()
            except Exception:
                log.exception("drain failed; remaining calls are left to their leases")
        await cancel_and_wait(self._reporter)
        if self._slots is not None:
            with contextlib.suppress(Exception):
                await self._slots.delete(self.worker_id)
        if self._ctx is not None:
            with contextlib.suppress(Exception):  # its pooled connections, not left to exit
                await self._ctx.openai_client.close()
        if self._nc is not None:
            # Everything of ours was awaited; flush the last naks/acks and close (a drain
            # would wait on the pull subscription's lingering fetch request).
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self._nc.close()
        log.info("session worker stopped")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.session_drain_deadline_s
        log.info("draining %d calls", self.active_calls)
        while (self._runners or self._handed_off) and loop.time() < deadline:
            await self._confirm_handoffs()
            overdue = [
                call_id
                for call_id, at in self._handed_off.items()
                if time.monotonic() - at >= HANDOFF_CONFIRM_S
            ]
            if overdue:
                await self._take_back()
            await self._hand_off_some()
            self._changed.clear()
            await wait_a_while(self._changed, DRAIN_TICK_S)
        if self._runners:
            log.warning("drain deadline: handing off %d calls as they are", len(self._runners))
            await asyncio.gather(*(r.hand_off() for r in list(self._runners.values())))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    async def _confirm_handoffs(self) -> None:
        """A hand-off is done when another worker holds the call's lease."""
        assert self._ctx is not None
        for call_id in list(self._handed_off):
            lease = CallLease(self._ctx.js, self._ctx.leases, call_id, self.worker_id, 1)
            try:
                holder = await lease.holder()
            except Exception as error:
                log.warning("lease lookup failed: %s", type(error).__name__)
                return
            if holder is not None and holder.worker != self.worker_id:
                self._handed_off.pop(call_id, None)

    async def _hand_off_some(self) -> None:
        waiting = [
            runner
            for call_id, runner in self._runners.items()
            if call_id not in self._handed_off and call_id not in self._kept
        ]
        if not waiting:
            return
        elsewhere = free_elsewhere(
            await self._slot_reports(), self.worker_id, time.time(), SLOT_REPORT_MAX_AGE_S
        )
        budget = handoff_budget(elsewhere, len(self._handed_off), len(waiting))
        for runner in waiting[:budget]:
            self._handed_off[runner.call_id] = time.monotonic()
            await runner.hand_off()

    async def _take_back(self) -> None:
        """Fetch a handed-off job nobody took, and serve its call again. Other jobs met on
        the way are returned with a short delay, for workers that are not draining."""
        message = await self._fetch_one(timeout=0.5)
        if message is None:
            return
        try:
            call_id = SessionJob.model_validate_json(message.data).call_id
        except ValidationError:
            await message.term()
            return
        if call_id not in self._handed_off:
            await message.nak(delay=1.0)
            return
        self._handed_off.pop(call_id, None)
        self._kept.add(call_id)
        log.info("hand-off not taken: serving the call again", extra={"call_id": call_id})
        await self._free.acquire()
        self._start(message)
