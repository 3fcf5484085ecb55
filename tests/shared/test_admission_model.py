"""The admission model against a simple oracle, by hypothesis: random arrivals, endings,
worker deaths and drains, reports that reach each decider late and out of order, and
several deciders whose compare-and-set steps interleave.

The deciders run the very procedures the acceptor runs (`booking.book_steps`,
`admission.release_steps`); only the store is in memory: a dict of documents with
revisions, where each step is one atomic compare-and-set, as in KV. A decider's view of
the workers (capacity, liveness, draining) is its own and lags until synced; its view of
the books is the store's (the real watch lags by milliseconds, failure detection by
seconds). The oracle counts the calls booked and the capacity of the workers alive.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shared.admission import (
    BOOK_PREFIX,
    Change,
    Document,
    Steps,
    book_worker,
    live_calls,
    release_steps,
)
from shared.booking import book_steps
from shared.capacity import Standing, WorkerReport, standing

NOW = 1_800_000_000.0  # wall clock: frozen (nothing expires in the model)
MONO = 1000.0
UNTIL = NOW + 3720.0


@dataclass
class Worker:
    capacity: int
    state: str = "live"  # live, draining, dead


class Store:
    """KV in memory: every change is one atomic compare-and-set on one key."""

    def __init__(self) -> None:
        self.docs: dict[str, Document | None] = {}

    def apply(self, change: Change[Any]) -> Any:
        new, result = change.decide(self.docs.get(change.key))
        if new is not None:
            self.docs[change.key] = new
        return result

    def books(self) -> dict[str, set[str]]:
        return {
            worker: set(live_calls(doc, NOW))
            for key, doc in self.docs.items()
            if (worker := book_worker(key)) is not None and doc
        }


@dataclass
class Decider:
    """One acceptor replica: its own view of the workers, the store's view of the books."""

    store: Store
    rng: random.Random
    reports: dict[str, WorkerReport] = field(default_factory=dict)

    def standing(self) -> Standing:
        return standing(self.reports, self.store.books(), MONO, 10.0, 3.0)

    def capacity(self, worker: str) -> int:
        report = self.reports.get(worker)  # gone or draining in the view: no room (view.py)
        return report.capacity if report is not None and not report.draining else 0

    def until_of(self, worker: str, call_id: str) -> float | None:
        return live_calls(self.store.docs.get(BOOK_PREFIX + worker), NOW).get(call_id)

    def now(self) -> float:
        return NOW

    def sync(self, name: str, worker: Worker) -> None:
        if worker.state == "dead":
            self.reports.pop(name, None)  # its report lapsed (or was deleted)
        else:
            draining = worker.state == "draining"
            self.reports[name] = WorkerReport(0, worker.capacity, draining, seen_at=MONO)


@dataclass
class Pending:
    kind: str  # book, release
    decider: int
    call_id: str
    steps: Steps[Any]
    change: Change[Any] | None
    fresh_start: bool  # the decider's view of the workers was the truth when it began
    clean_since: int  # the world's `disturbances` when it began


class AdmissionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.workers: dict[str, Worker] = {}
        self.deciders: list[Decider] = []
        self.pending: list[Pending] = []
        self.admitted: set[str] = set()  # booked and not released
        self.ending: set[str] = set()  # release under way
        self.ended: set[str] = set()
        self.booking: dict[str, str] = {}
        self.calls = 0
        self.disturbances = 0  # changes to the world by anything but a decision's own steps

    # -- setup -----------------------------------------------------------------------------

    @rule(seed=st.integers(0, 2**16), deciders=st.integers(1, 3), first=st.integers(1, 4))
    @precondition(lambda self: not self.deciders)
    def start(self, seed: int, deciders: int, first: int) -> None:
        self.workers["w0"] = Worker(first)
        self.deciders = [Decider(self.store, random.Random(seed + i)) for i in range(deciders)]
        for decider in self.deciders:
            decider.sync("w0", self.workers["w0"])

    def fresh(self, decider: Decider) -> bool:
        truth = {
            name: (w.capacity, w.state == "draining")
            for name, w in self.workers.items()
            if w.state != "dead"
        }
        seen = {name: (r.capacity, r.draining) for name, r in decider.reports.items()}
        return truth == seen

    def live_capacity(self) -> int:
        return sum(w.capacity for w in self.workers.values() if w.state == "live")

    def occupied(self) -> set[str]:
        return set().union(*self.store.books().values()) if self.store.books() else set()

    # -- the world -------------------------------------------------------------------------

    @rule(capacity=st.integers(1, 4))
    @precondition(lambda self: self.deciders and len(self.workers) < 5)
    def add_worker(self, capacity: int) -> None:
        self.workers[f"w{len(self.workers)}"] = Worker(capacity)
        self.disturbances += 1

    @rule(data=st.data(), how=st.sampled_from(["dead", "draining"]))
    @precondition(lambda self: any(w.state == "live" for w in self.workers.values()))
    def worker_leaves(self, data: st.DataObject, how: str) -> None:
        live = sorted(n for n, w in self.workers.items() if w.state == "live")
        self.workers[data.draw(st.sampled_from(live))].state = how
        self.disturbances += 1

    @rule(data=st.data())
    @precondition(lambda self: self.deciders)
    def a_report_arrives(self, data: st.DataObject) -> None:
        """One worker's report reaches one decider: late, and in any order."""
        decider = data.draw(st.sampled_from(self.deciders))
        name = data.draw(st.sampled_from(sorted(self.workers)))
        decider.sync(name, self.workers[name])

    @rule(data=st.data())
    @precondition(lambda self: self.deciders)
    def a_decider_catches_up(self, data: st.DataObject) -> None:
        """Every report reaches one decider: its view of the workers is the truth again."""
        decider = data.draw(st.sampled_from(self.deciders))
        for name, worker in self.workers.items():
            decider.sync(name, worker)

    # -- decisions and releases ------------------------------------------------------------

    @rule(data=st.data())
    @precondition(lambda self: self.deciders and len(self.pending) < 6)
    def a_call_arrives(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.deciders) - 1))
        decider = self.deciders[index]
        fresh = self.fresh(decider)
        sure = fresh or data.draw(st.booleans())  # a stale view may believe it is sure
        self.calls += 1
        call_id = f"c{self.calls}"
        steps = book_steps(call_id, UNTIL, decider, sure)
        self.begin(Pending("book", index, call_id, steps, None, fresh, self.disturbances))

    @rule(data=st.data())
    @precondition(lambda self: self.admitted - self.ending)
    def a_call_ends(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(sorted(self.admitted - self.ending)))
        self.ending.add(call_id)
        steps = release_steps(call_id, self.booking[call_id], lambda: NOW)
        self.begin(Pending("release", 0, call_id, steps, None, True, self.disturbances))
        self.disturbances += 1

    def begin(self, pending: Pending) -> None:
        try:
            pending.change = next(pending.steps)
        except StopIteration as done:
            self.finish(pending, done.value)
            return
        self.pending.append(pending)

    @rule(data=st.data())
    @precondition(lambda self: self.pending)
    def a_step(self, data: st.DataObject) -> None:
        """One compare-and-set of one pending procedure: interleaving is hypothesis's."""
        pending = data.draw(st.sampled_from(self.pending))
        assert pending.change is not None
        result = self.store.apply(pending.change)
        if not (pending.kind == "book" and pending.fresh_start):
            self.disturbances += 1  # a stale decider's step, or a release, changes the world
        try:
            pending.change = pending.steps.send(result)
        except StopIteration as done:
            self.pending.remove(pending)
            self.finish(pending, done.value)

    def finish(self, pending: Pending, value: Any) -> None:
        if pending.kind == "release":
            self.admitted.discard(pending.call_id)
            self.ending.discard(pending.call_id)
            self.ended.add(pending.call_id)
            return
        clean = pending.fresh_start and self.disturbances == pending.clean_since
        solo = clean and not any(p.kind == "book" for p in self.pending)
        room_before = self.live_capacity() - len(self.occupied() - {pending.call_id})
        if value is not None:
            self.admitted.add(pending.call_id)
            self.booking[pending.call_id] = value
            if clean:  # never overbooked while every view of the workers was the truth
                assert len(self.occupied()) <= self.live_capacity()
        if solo:  # exact on a fresh view: refused only when the live workers are full
            assert (value is not None) == (room_before > 0), (value, room_before)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def no_book_exceeds_its_worker(self) -> None:
        for worker, calls in self.store.books().items():
            assert len(calls) <= self.workers[worker].capacity

    @invariant()
    def every_live_call_is_counted(self) -> None:
        """Never lost; counted twice or more only while deciders move it at once (each
        mover adds it before leaving a forwarding entry; all but one take theirs back)."""
        books = self.store.books()
        movers = sum(p.kind == "book" for p in self.pending)
        for call_id in self.admitted - self.ending:
            holders = sum(call_id in calls for calls in books.values())
            assert 1 <= holders <= 1 + movers, (call_id, books)

    @invariant()
    def ended_calls_leave_no_trace(self) -> None:
        if self.pending:
            return
        assert not (self.occupied() & self.ended)
        assert self.occupied() == self.admitted


TestAdmissionModel = AdmissionModel.TestCase
TestAdmissionModel.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_two_deciders_moving_the_same_call_the_same_way_keep_it_counted() -> None:
    """The interleaving that once lost a call: both add it to the same live book, one
    leaves the forwarding entry, and the other must not take the call back out."""
    store = Store()
    store.docs["book.dead"] = {"calls": {"x": UNTIL}, "moved": {}}
    deciders = [Decider(store, random.Random(i)) for i in range(2)]
    for decider in deciders:
        decider.sync("live", Worker(2))  # "dead" has no report: its book is an orphan
    first, second = (book_steps(f"new{i}", UNTIL, d, True) for i, d in enumerate(deciders))
    a, b = next(first), next(second)
    assert a.key == b.key == "book.live"
    a = first.send(store.apply(a))  # "added"
    b = second.send(store.apply(b))  # "present": first's move
    a = first.send(store.apply(a))  # first leaves the forwarding entry
    b = second.send(store.apply(b))  # second finds it moved the same way: nothing to undo
    for steps, change in ((first, a), (second, b)):
        with contextlib.suppress(StopIteration):
            while True:
                change = steps.send(store.apply(change))
    assert "x" in store.books()["live"]
    assert store.docs["book.dead"] == {"calls": {}, "moved": {"x": ["live", UNTIL]}}
