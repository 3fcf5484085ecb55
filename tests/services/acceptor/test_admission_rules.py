"""Admission decisions, apart from KV: slots reported, slots reserved, agent counts. Pure."""

from __future__ import annotations

from services.acceptor.admission import (
    WorkerReport,
    admit_call,
    free_slots,
    reserve_slot,
    unreserve_slot,
)
from shared.admission import call_until, live_calls, without_call
from shared.agents import AgentProfile

NOW = 1_800_000_000.0


def report(free: int, *, draining: bool = False, seen_at: float = 100.0) -> WorkerReport:
    return WorkerReport(free=free, capacity=10, draining=draining, seen_at=seen_at)


def test_free_slots_count_live_workers_that_take_calls() -> None:
    reports = [report(3), report(2, draining=True), report(4, seen_at=80.0), report(-1)]
    assert free_slots(reports, now=100.5, stale_after_s=10.0) == 3


def test_a_reservation_needs_a_free_slot_beyond_those_held() -> None:
    doc, second = reserve_slot(None, NOW, free_reported=2, hold_s=3.0)
    assert second == str(int(NOW + 3)) and doc == {second: 1}
    doc, again = reserve_slot(doc, NOW + 0.1, free_reported=2, hold_s=3.0)
    assert again == second and doc == {second: 2}
    refused, none = reserve_slot(doc, NOW + 0.2, free_reported=2, hold_s=3.0)
    assert (refused, none) == (None, None)  # no write when refused


def test_reservations_expire_after_their_second() -> None:
    doc = {str(int(NOW) - 1): 5, str(int(NOW) + 2): 1}
    new, second = reserve_slot(doc, NOW, free_reported=2, hold_s=3.0)
    assert second is not None and str(int(NOW) - 1) not in new  # pruned on write


def test_a_released_reservation_frees_its_slot() -> None:
    doc, second = reserve_slot(None, NOW, free_reported=1, hold_s=3.0)
    assert second is not None
    assert unreserve_slot(doc, second, NOW) == {}
    assert unreserve_slot({}, second, NOW) is None


def test_an_agent_admits_up_to_its_limit_and_counts_a_call_once() -> None:
    doc, ok = admit_call(None, "a", NOW, NOW + 60, limit=2)
    doc, ok2 = admit_call(doc, "b", NOW, NOW + 60, limit=2)
    refused, ok3 = admit_call(doc, "c", NOW, NOW + 60, limit=2)
    again, ok4 = admit_call(doc, "a", NOW, NOW + 60, limit=2)
    assert (ok, ok2, ok3, ok4) == (True, True, False, True)
    assert refused is None and again is None
    assert set(live_calls(doc, NOW)) == {"a", "b"}


def test_an_ended_call_frees_its_place_and_a_lost_one_expires() -> None:
    doc = {"calls": {"a": NOW + 60, "b": NOW + 60, "lost": NOW - 1}}
    assert admit_call(doc, "c", NOW, NOW + 60, limit=3)[1] is True  # "lost" expired
    assert without_call(doc, "a", NOW) == {"calls": {"b": NOW + 60}}
    assert without_call(doc, "zzz", NOW) is None


def test_a_call_counts_no_longer_than_it_can_live() -> None:
    agent = AgentProfile(
        name="a", model="m", voice="v", instructions="i", greeting="g",
        limits={"max_duration_s": 9000},
    )  # fmt: skip
    assert call_until(agent, NOW) == NOW + 3600 + 120
