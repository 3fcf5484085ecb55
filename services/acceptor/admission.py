"""Admission control: accept a call only when a session slot exists for it and its agent
is under `limits.max_concurrent_calls`; the slot is reserved at decision time.

Free slots come from the session workers' own reports in KV bucket `worker_slots`
(`{"free", "capacity", "draining"}`, TTL 10 s, refreshed every 2 s), watched here so a
decision reads them from memory. A report lags the truth by up to one period, so each
admitted call also holds a reservation in `admissions/slots` for `SLOT_HOLD_S` — long
enough for a worker to take the call and report it — and a decision needs
`free reported - reservations held >= 1`. Both the reservation and the per-agent count are
compare-and-set writes in KV, so a burst, acceptor replicas and restarts cannot overbook.
The price is conservatism: for a few seconds a fresh call counts twice (reserved and
reported), so capacity must have headroom of about `rate * SLOT_HOLD_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nats.js.kv import KeyValue

from shared.admission import (
    SLOTS_KEY,
    Document,
    JsonCell,
    agent_key,
    call_until,
    counts_toward_limit,
    live_calls,
    live_reservations,
    without_call,
)
from shared.agents import AgentProfile

log = logging.getLogger(__name__)

# Session workers report every 2 s (services/session/worker.py SLOT_REPORT_PERIOD_S); a
# call is taken within a few ms when a slot is free; one second of margin.
SLOT_HOLD_S = 3.0
# A report not refreshed for this long is a dead worker's (its KV entry's TTL).
REPORT_STALE_S = 10.0
# Until the first worker report arrives (an acceptor started before or with the workers),
# a decision waits this long for one rather than rejecting calls a worker could take.
FIRST_REPORT_GRACE_S = 1.0

NO_CAPACITY = "no_capacity"
AGENT_LIMIT = "agent_limit"


@dataclass(frozen=True)
class WorkerReport:
    free: int
    capacity: int
    draining: bool
    seen_at: float  # time.monotonic() when it arrived


@dataclass(frozen=True)
class Reservation:
    call_id: str
    admitted: bool
    reason: str | None = None  # why not admitted: no_capacity, agent_limit
    agent: str | None = None  # the agent whose count holds the call (limited agents only)
    slot_second: str | None = None  # the reservation bucket the call's slot is in


# -- pure decisions -----------------------------------------------------------------------


def free_slots(reports: Iterable[WorkerReport], now: float, stale_after_s: float) -> int:
    """Free slots of live workers that take calls (draining ones take none)."""
    return sum(
        max(0, report.free)
        for report in reports
        if not report.draining and now - report.seen_at < stale_after_s
    )


def reserve_slot(
    document: Document | None, now: float, free_reported: int, hold_s: float
) -> tuple[Document | None, str | None]:
    """Reserve one slot if `free_reported` covers the reservations still held; returns
    (new document or None for no write, the reservation's bucket or None if refused)."""
    held = live_reservations(document, now)
    if free_reported - sum(held.values()) < 1:
        return None, None
    second = str(int(now + hold_s))
    held[second] = held.get(second, 0) + 1
    return held, second


def unreserve_slot(document: Document | None, second: str, now: float) -> Document | None:
    held = live_reservations(document, now)
    if second not in held:
        return None
    held[second] -= 1
    return {s: n for s, n in held.items() if n > 0}


def admit_call(
    document: Document | None, call_id: str, now: float, until: float, limit: int
) -> tuple[Document | None, bool]:
    """Count the call toward its agent's limit if there is room (a call already counted,
    e.g. a redelivered webhook, stays admitted without a write)."""
    calls = live_calls(document, now)
    if call_id in calls:
        return None, True
    if len(calls) >= limit:
        return None, False
    calls[call_id] = until
    return {"calls": calls}, True


# -- the KV side --------------------------------------------------------------------------


class Admission:
    def __init__(
        self,
        admissions: KeyValue,
        worker_slots: KeyValue,
        *,
        hold_s: float = SLOT_HOLD_S,
        stale_after_s: float = REPORT_STALE_S,
    ) -> None:
        self._admissions = admissions
        self._worker_slots = worker_slots
        self._hold_s = hold_s
        self._stale_after_s = stale_after_s
        self._reports: dict[str, WorkerReport] = {}
        self._slots = JsonCell(admissions, SLOTS_KEY)
        self._agents: dict[str, JsonCell] = {}
        self._changed = asyncio.Event()
        self._watching: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._first_report = asyncio.Event()

    async def start(self) -> None:
        self._watching = asyncio.create_task(self._watch())
        # Decide on real reports from the first call on (an empty view rejects everything).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._started.wait()

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)

    def free_reported(self) -> int:
        return free_slots(self._reports.values(), time.monotonic(), self._stale_after_s)

    async def wait_for_free(self, predicate: Callable[[int], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(free_reported)` holds (tests and start-up use it)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if predicate(self.free_reported()):
                    return
                await self._changed.wait()

    async def _watch(self) -> None:
        while True:
            try:
                watcher = await self._worker_slots.watchall()
                try:
                    async for entry in watcher:
                        if entry is None:  # the initial values are all in
                            self._started.set()
                            continue
                        self._on_report(entry.key, entry.value, entry.operation)
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("worker slot watch failed, restarting: %s", type(error).__name__)
                await asyncio.sleep(1.0)

    def _on_report(self, worker: str, value: bytes | None, operation: str | None) -> None:
        if operation in ("DEL", "PURGE") or not value:
            self._reports.pop(worker, None)
        else:
            try:
                report = json.loads(value)
                self._first_report.set()
                self._reports[worker] = WorkerReport(
                    free=int(report["free"]),
                    capacity=int(report["capacity"]),
                    draining=bool(report.get("draining", False)),
                    seen_at=time.monotonic(),
                )
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable slot report ignored")
                return
        self._changed.set()

    def _agent_cell(self, name: str) -> JsonCell:
        cell = self._agents.get(name)
        if cell is None:
            cell = self._agents[name] = JsonCell(self._admissions, agent_key(name))
        return cell

    async def reserve(self, call_id: str, agent: AgentProfile) -> Reservation:
        """Admit the call (reserving its slot and its place in the agent's limit) or say why
        not. Every write is a compare-and-set: what is reserved here is reserved for all."""
        counted: str | None = None
        limit = agent.limits.max_concurrent_calls
        if counts_toward_limit(agent) and limit is not None:
            now = time.time()
            until = call_until(agent, now)
            admitted = await self._agent_cell(agent.name).change(
                lambda doc: admit_call(doc, call_id, time.time(), until, limit)
            )
            if not admitted:
                return Reservation(call_id, False, AGENT_LIMIT)
            counted = agent.name
        if not self._first_report.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_REPORT_GRACE_S):
                    await self._first_report.wait()
        free = self.free_reported()
        second = await self._slots.change(
            lambda doc: reserve_slot(doc, time.time(), free, self._hold_s)
        )
        if second is None:
            if counted is not None:
                await self._uncount(counted, call_id)
            return Reservation(call_id, False, NO_CAPACITY)
        return Reservation(call_id, True, agent=counted, slot_second=second)

    async def release(self, reservation: Reservation) -> None:
        """Give back what an admitted call held (its accept failed: there is no call)."""
        if not reservation.admitted:
            return
        if reservation.slot_second is not None:
            second = reservation.slot_second
            await self._slots.change(lambda doc: (unreserve_slot(doc, second, time.time()), None))
        if reservation.agent is not None:
            await self._uncount(reservation.agent, reservation.call_id)

    async def _uncount(self, agent: str, call_id: str) -> None:
        await self._agent_cell(agent).change(
            lambda doc: (without_call(doc, call_id, time.time()), None)
        )
