"""The acceptor's view of capacity, and what it allows. Pure: no I/O, no clock of its own.

Two inputs, both watched from KV: the workers' slot reports (`worker_slots`: capacity,
draining, free and active as the worker counts them) and the books of admitted calls
(`admissions/book.<worker>`, see `shared/admission.py`). This module says which workers
take calls, how much room their books have, which books belong to workers that left, and
whether the view is sure enough to refuse a call (`Standing.sure`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Liveness(StrEnum):
    LIVE = "live"  # reported recently
    LIMBO = "limbo"  # its report just lapsed: dead, or reconnecting (unknown, not gone)
    GONE = "gone"  # lapsed for longer, or deleted by the worker as it stopped


@dataclass(frozen=True)
class WorkerReport:
    free: int
    capacity: int
    draining: bool
    seen_at: float  # monotonic time the report was made (arrival, less its known age)
    active: int = 0
    unbooked: int = 0  # calls it runs that no admission book holds


def liveness(
    report: WorkerReport | None, now: float, stale_after_s: float, limbo_s: float
) -> Liveness:
    if report is None:
        return Liveness.GONE
    age = now - report.seen_at
    if age < stale_after_s:
        return Liveness.LIVE
    return Liveness.LIMBO if age < stale_after_s + limbo_s else Liveness.GONE


@dataclass(frozen=True)
class Standing:
    """What the view allows now."""

    room: dict[str, int]  # live, non-draining worker → free places in its book (≥ 0)
    orphans: dict[str, list[str]]  # book of a gone or draining worker → calls still in it
    capacity: int  # of the live, non-draining workers
    booked: int  # calls in every book, each once
    unbooked: int  # calls live workers run that no book holds (jobs made before books)
    sure: bool  # some live worker, none in limbo: a missing worker is known, not guessed

    @property
    def full(self) -> bool:
        """No place for a new call: departed workers' calls wait for places, or the calls
        booked and those running without a booking fill the live workers."""
        return any(self.orphans.values()) or self.booked + self.unbooked >= self.capacity

    @property
    def free(self) -> int:
        """Places a new call may take."""
        return 0 if self.full else sum(self.room.values())


def standing(
    reports: Mapping[str, WorkerReport],
    books: Mapping[str, set[str]],
    now: float,
    stale_after_s: float,
    limbo_s: float,
) -> Standing:
    room: dict[str, int] = {}
    orphans: dict[str, list[str]] = {}
    sure = True
    capacity = 0
    unbooked = 0
    for worker in set(reports) | set(books):
        state = liveness(reports.get(worker), now, stale_after_s, limbo_s)
        calls = books.get(worker, set())
        if state == Liveness.LIMBO:
            sure = False
            continue
        report = reports.get(worker)
        if state == Liveness.LIVE and report is not None:
            unbooked += max(0, report.unbooked)
        if state == Liveness.LIVE and report is not None and not report.draining:
            capacity += report.capacity
            room[worker] = max(0, report.capacity - len(calls))
        elif calls:
            orphans[worker] = sorted(calls)
    booked = len(set().union(*books.values())) if books else 0
    # No live worker at all is not a full fleet but an unknown one (workers starting, or
    # all of them rolling): wait for reports rather than refuse.
    return Standing(room, orphans, capacity, booked, unbooked, sure and capacity > 0)


def order_to_try(room: Mapping[str, int], rng: random.Random) -> list[str]:
    """Workers with room first, drawn at random weighted by their room (concurrent deciders
    then rarely race for the same book), then the full ones (read before a refusal)."""
    open_ = {worker: places for worker, places in room.items() if places > 0}
    ordered: list[str] = []
    while open_:
        [worker] = rng.choices(list(open_), weights=list(open_.values()))
        ordered.append(worker)
        del open_[worker]
    return ordered + sorted(worker for worker, places in room.items() if places <= 0)


def free_by_reports(
    reports: Mapping[str, WorkerReport], booked: int, now: float, stale_after_s: float
) -> int:
    """Free places by the workers' own counts: their free slots less the booked calls no
    worker runs yet. Independent of the books' room; an operator's cross-check."""
    live = [r for r in reports.values() if now - r.seen_at < stale_after_s]
    reported_free = sum(max(0, r.free) for r in live if not r.draining)
    waiting = max(0, booked - sum(max(0, r.active) for r in live))
    return reported_free - waiting
