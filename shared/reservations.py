"""Admission control: accept a call only when the fleet has a place for it and its agent is
under `limits.max_concurrent_calls`; refuse only when both are known, not guessed.

What is counted, and where: every admitted call is booked, by `call_id`, in exactly one
KV document `admissions/book.<worker>` from the accept decision until the call ends (the
session worker that finishes it releases it; `shared/admission.py`). A call waiting in
the work queue and a call running are the same entry, so nothing is counted twice, and
booking never waits for a worker to report what it took. A book is written only by
compare-and-set and never holds more calls than its worker's reported `--capacity`.
Workers' capacity, draining flag and liveness come from their slot reports
(`worker_slots`, refreshed every 2 s, watched here so decisions read them from memory).

Why it is exact: a new call enters only the book of a live, non-draining worker with
room, and only while no calls sit in the book of a worker that died or drains (those are
moved first into live books, with a forwarding entry for their release). So booked calls
never exceed the capacity of the live workers, whatever number of acceptor replicas
decide at once. Calls a worker runs that no book holds (jobs made before books) still
count: workers report them (`unbooked`), and booked plus unbooked calls fill capacity.
A refusal needs every live book read by compare-and-set in that decision
and found full, on a view that is sure: synced since the last (re)connect, settled for a
report period, with some live worker, and with no worker whose report just lapsed (it
may be reconnecting).
Otherwise the decision waits for reports, bounded by the call's accept deadline, and a
call still unknown then is refused as `capacity_unknown`, never as `no_capacity`.

Why it scales out: there is one key per worker, and deciders pick books at random
weighted by their room, so replicas rarely race; no key is written by every admission.
A refusal reads every live book (one get each): the cost of being sure falls on refusals.
The per-agent limit is one key per limited agent (`agent.<name>`), exact the same way.
A worker that dies still counts as live until its report lapses (`REPORT_STALE_S`).

Layout: `capacity.py` (the pure view), `booking.py` (the pure booking procedure, as
compare-and-set steps), `view.py` (the watched view), and here the decision with I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js.kv import KeyValue

from shared import metrics
from shared.admission import (
    Document,
    JsonCell,
    agent_key,
    call_until,
    counts_toward_limit,
    live_calls,
    run_steps,
    unbook,
    without_call,
)
from shared.agents import AgentProfile
from shared.booking import book_steps
from shared.capacity import Standing, free_by_reports
from shared.capacity_view import CapacityView

log = logging.getLogger(__name__)

# An unknown view is waited on until this long before the accept deadline (time to reject).
REFUSAL_MARGIN_S = 0.5
# Without a deadline (tests, tools), this long.
DEFAULT_WAIT_S = 5.0

NO_CAPACITY = "no_capacity"
AGENT_LIMIT = "agent_limit"
CAPACITY_UNKNOWN = "capacity_unknown"


@dataclass(frozen=True)
class Reservation:
    call_id: str
    admitted: bool
    reason: str | None = None  # why not admitted: no_capacity, agent_limit, capacity_unknown
    agent: str | None = None  # the agent whose count holds the call (limited agents only)
    booking: str | None = None  # the worker whose book holds the call


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


class Admission:
    def __init__(self, admissions: KeyValue, worker_slots: KeyValue, **timing: float) -> None:
        """`timing`: the view's `stale_after_s`, `limbo_s` and `settle_s` (tests shorten
        them; services keep `CapacityView`'s defaults)."""
        self._admissions = admissions
        self._cells: dict[str, JsonCell] = {}
        # The view's watch keeps the cells' caches fresh.
        self.view = CapacityView(admissions, worker_slots, on_book=self._offer, **timing)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    async def resync(self) -> None:
        """The NATS connection came back: re-read the view before trusting an absence."""
        await self.view.resync()

    def standing(self) -> Standing:
        return self.view.standing()

    def booking_of(self, call_id: str) -> str | None:
        return self.view.booking_of(call_id)

    def free_reported(self) -> int:
        """Free slots as the live, non-draining workers report them (tests and start-up)."""
        return self.view.free_reported()

    async def wait_for_free(self, predicate: Callable[[int], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(free_reported)` holds (tests and start-up use it)."""
        await self.view.wait(lambda: predicate(self.view.free_reported()), timeout)

    async def wait_for_view(
        self, predicate: Callable[[Standing], bool], timeout: float = 10.0
    ) -> None:
        """Wait until `predicate(standing)` holds (tests use it to see books settle)."""
        await self.view.wait(lambda: predicate(self.view.standing()), timeout)

    def _offer(self, key: str, revision: int, document: Document | None) -> None:
        cell = self._cells.get(key)
        if cell is not None:
            cell.offer(revision, document)

    def _cell(self, key: str) -> JsonCell:
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = JsonCell(self._admissions, key, observer=self.view.learn)
        return cell

    async def reserve(
        self, call_id: str, agent: AgentProfile, deadline: float | None = None
    ) -> Reservation:
        """Admit the call (its place in a book and in its agent's limit) or say why not.
        `deadline` (epoch seconds) bounds the wait for a sure view."""
        counted: str | None = None
        limit = agent.limits.max_concurrent_calls
        if counts_toward_limit(agent) and limit is not None:
            until = call_until(agent, time.time())
            admitted = await self._cell(agent_key(agent.name)).change(
                lambda doc: admit_call(doc, call_id, time.time(), until, limit)
            )
            if not admitted:
                return Reservation(call_id, False, AGENT_LIMIT)
            counted = agent.name
        try:
            booking, reason = await self._book(call_id, agent, deadline)
        except BaseException:
            if counted is not None:
                await self._uncount(counted, call_id)
            raise
        if booking is None:
            if counted is not None:
                await self._uncount(counted, call_id)
            return Reservation(call_id, False, reason)
        return Reservation(call_id, True, agent=counted, booking=booking)

    async def _book(
        self, call_id: str, agent: AgentProfile, deadline: float | None
    ) -> tuple[str | None, str]:
        until = call_until(agent, time.time())
        give_up = (deadline or time.time() + DEFAULT_WAIT_S) - REFUSAL_MARGIN_S
        view = self.view
        while True:
            view.changed.clear()
            known = view.booking_of(call_id)
            if known is not None:  # a redelivered webhook: booked by its first handling
                return known, ""
            sure = view.sure(view.standing())
            booking = await run_steps(book_steps(call_id, until, view, sure), self._cell)
            standing = view.standing()
            metrics.ADMISSION_CAPACITY.set(standing.capacity)
            metrics.ADMISSION_BOOKED.set(standing.booked)
            if booking is not None:
                return booking, ""
            if sure:
                # Every live book was just read by compare-and-set and is full, or calls
                # of departed workers still wait for a place: the fleet is full.
                now = time.monotonic()
                if free_by_reports(view.reports, standing.booked, now, view.stale_after_s) > 0:
                    metrics.ADMISSION_REFUSED_WHILE_FREE.inc()
                return None, NO_CAPACITY
            remaining = give_up - time.time()
            if remaining <= 0:
                return None, CAPACITY_UNKNOWN
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, view.until_clearer())):
                    await view.changed.wait()

    async def release(self, reservation: Reservation) -> None:
        """Give back what an admitted call held (its accept failed: there is no call)."""
        if not reservation.admitted:
            return
        if reservation.booking is not None:
            await unbook(self._admissions, reservation.call_id, reservation.booking)
        if reservation.agent is not None:
            await self._uncount(reservation.agent, reservation.call_id)

    async def _uncount(self, agent: str, call_id: str) -> None:
        await self._cell(agent_key(agent)).change(
            lambda doc: (without_call(doc, call_id, time.time()), None)
        )
