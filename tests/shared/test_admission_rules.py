"""Admission decisions, apart from KV: books, the view of the workers, agent counts. Pure."""

from __future__ import annotations

import random

from shared.admission import (
    book_call,
    book_worker,
    call_until,
    live_calls,
    move_out,
    unbook_call,
    without_call,
)
from shared.agents import AgentProfile
from shared.capacity import (
    Liveness,
    WorkerReport,
    free_by_reports,
    liveness,
    order_to_try,
    standing,
)
from shared.reservations import admit_call

NOW = 1_800_000_000.0
MONO = 1000.0


def report(
    capacity: int = 10, *, free: int | None = None, draining: bool = False, age: float = 0.0
) -> WorkerReport:
    free = capacity if free is None else free
    return WorkerReport(free, capacity, draining, seen_at=MONO - age, active=capacity - free)


def view(reports: dict[str, WorkerReport], books: dict[str, set[str]]):  # type: ignore[no-untyped-def]
    return standing(reports, books, MONO, stale_after_s=10.0, limbo_s=3.0)


def test_a_book_takes_calls_up_to_its_capacity_and_counts_a_call_once() -> None:
    doc, ok = book_call(None, "a", NOW, NOW + 60, capacity=2)
    doc, ok2 = book_call(doc, "b", NOW, NOW + 60, capacity=2)
    full, ok3 = book_call(doc, "c", NOW, NOW + 60, capacity=2)
    again, ok4 = book_call(doc, "a", NOW, NOW + 60, capacity=2)
    assert (ok, ok2, ok3, ok4) == (True, True, False, True)
    assert full is None and again is None  # no write when refused or already booked
    assert set(live_calls(doc, NOW)) == {"a", "b"}


def test_an_ended_call_leaves_its_book_and_a_lost_one_expires() -> None:
    doc = {"calls": {"a": NOW + 60, "lost": NOW - 1}}
    assert book_call(doc, "b", NOW, NOW + 60, capacity=2)[1] is True  # "lost" expired
    assert unbook_call(doc, "a", NOW) == ({"calls": {}, "moved": {}}, None)
    assert unbook_call(doc, "zzz", NOW) == (None, None)


def test_a_moved_call_leaves_a_forwarding_entry_that_its_release_follows() -> None:
    doc = {"calls": {"a": NOW + 60}}
    moved, ok = move_out(doc, "a", "w2", NOW)
    assert ok and moved == {"calls": {}, "moved": {"a": ["w2", NOW + 60]}}
    assert move_out(moved, "a", "w3", NOW) == (None, False)  # moved elsewhere: not twice
    assert move_out(moved, "a", "w2", NOW) == (None, True)  # the same move by another decider
    assert unbook_call(moved, "a", NOW) == ({"calls": {}, "moved": {}}, "w2")


def test_live_workers_give_room_and_departed_ones_leave_orphans() -> None:
    reports = {
        "live": report(10),
        "draining": report(10, draining=True),
        "dead": report(10, age=20.0),
        "limbo": report(10, age=11.0),
    }
    books = {"live": {"a", "b"}, "draining": {"c"}, "dead": {"d"}, "gone": {"e"}}
    seen = view(reports, books)
    assert seen.room == {"live": 8}
    assert seen.capacity == 10
    assert seen.orphans == {"draining": ["c"], "dead": ["d"], "gone": ["e"]}
    assert seen.booked == 5
    assert seen.free == 0  # the orphans need places first
    assert seen.sure is False  # "limbo" may be reconnecting


def test_a_view_without_limbo_is_sure_and_counts_every_place() -> None:
    seen = view({"a": report(3), "b": report(2)}, {"a": {"x"}})
    assert seen.sure and seen.free == 4 and seen.room == {"a": 2, "b": 2}


def test_a_view_without_any_live_worker_is_unknown_not_full() -> None:
    assert view({}, {}).sure is False
    assert view({"a": report(3, draining=True)}, {}).sure is False
    assert view({"a": report(3)}, {}).sure is True


def test_calls_a_worker_runs_without_a_booking_still_fill_it() -> None:
    unbooked = WorkerReport(0, 2, False, seen_at=MONO, active=2, unbooked=2)
    assert view({"a": unbooked}, {}).full  # two calls running, none booked
    # A booked call that a worker runs is counted once, whatever its report says.
    assert not view({"a": report(2, free=1)}, {"a": {"x"}}).full
    assert view({"a": report(2, free=0)}, {"a": {"x", "y"}}).full


def test_liveness_by_age() -> None:
    assert liveness(None, MONO, 10.0, 3.0) == Liveness.GONE
    assert liveness(report(age=9.9), MONO, 10.0, 3.0) == Liveness.LIVE
    assert liveness(report(age=12.0), MONO, 10.0, 3.0) == Liveness.LIMBO
    assert liveness(report(age=13.5), MONO, 10.0, 3.0) == Liveness.GONE


def test_books_with_room_are_tried_first_and_every_book_is_tried() -> None:
    order = order_to_try({"full": 0, "a": 3, "b": 1}, random.Random(1))
    assert set(order[:2]) == {"a", "b"} and order[2] == "full"


def test_free_by_reports_subtracts_calls_no_worker_runs_yet() -> None:
    reports = {"a": report(10, free=4), "b": report(5, free=0)}  # 6 + 5 active
    assert free_by_reports(reports, booked=11, now=MONO, stale_after_s=10.0) == 4
    assert free_by_reports(reports, booked=15, now=MONO, stale_after_s=10.0) == 0


def test_an_agent_admits_up_to_its_limit_and_counts_a_call_once() -> None:
    doc, ok = admit_call(None, "a", NOW, NOW + 60, limit=2)
    doc, ok2 = admit_call(doc, "b", NOW, NOW + 60, limit=2)
    refused, ok3 = admit_call(doc, "c", NOW, NOW + 60, limit=2)
    again, ok4 = admit_call(doc, "a", NOW, NOW + 60, limit=2)
    assert (ok, ok2, ok3, ok4) == (True, True, False, True)
    assert refused is None and again is None
    assert without_call(doc, "a", NOW) == {"calls": {"b": NOW + 60}}


def test_book_keys_name_their_worker() -> None:
    assert book_worker("book.w-1") == "w-1"
    assert book_worker("agent.salon") is None


def test_a_call_counts_no_longer_than_it_can_live() -> None:
    agent = AgentProfile(
        name="a", model="m", voice="v", instructions="i", greeting="g",
        limits={"max_duration_s": 9000},
    )  # fmt: skip
    assert call_until(agent, NOW) == NOW + 3600 + 120
