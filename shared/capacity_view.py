"""The acceptor's live view of capacity: the workers' slot reports and the admission books,
watched from KV so that decisions read them from memory.

A book's value is kept with its revision, and the view also learns from this process's
own reads and writes (`learn`), so it is never older than what this acceptor itself last
did: a decision right after moving calls sees the move without waiting for the watch.
After a (re)connect, the watches restart and the view is not `sure` again until they
have delivered everything and settled for a report period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable

from nats.js.kv import KeyValue

from shared.admission import BOOK_PREFIX, Document, book_worker, live_calls
from shared.capacity import Liveness, Standing, WorkerReport, liveness, standing
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A report not refreshed for this long is a dead worker's (workers report every 2 s).
REPORT_STALE_S = 10.0
# After it lapses, a worker is in limbo this long (reconnecting, or dead): no refusal then.
LIMBO_S = 3.0
# After the watches (re)start, absence means nothing until every worker had a period to
# report (services/session/worker.py SLOT_REPORT_PERIOD_S, plus a margin).
SETTLE_S = 2.5
WATCH_RETRY_S = 0.5


class CapacityView:
    def __init__(
        self,
        admissions: KeyValue,
        worker_slots: KeyValue,
        *,
        stale_after_s: float = REPORT_STALE_S,
        limbo_s: float = LIMBO_S,
        settle_s: float = SETTLE_S,
        on_book: Callable[[str, int, Document | None], None] | None = None,
    ) -> None:
        self._admissions = admissions
        self._worker_slots = worker_slots
        self.stale_after_s = stale_after_s
        self._limbo_s = limbo_s
        self._settle_s = settle_s
        self.reports: dict[str, WorkerReport] = {}
        self._books: dict[str, tuple[int, Document | None]] = {}  # worker → (revision, doc)
        self.changed = asyncio.Event()
        self._watches: list[asyncio.Task[None]] = []
        self._synced: set[str] = set()  # watches that delivered their initial values
        self._synced_at: float | None = None  # monotonic; None while (re)syncing
        self.rng = random.Random()
        # Told every book value the watch delivers (the admission's compare-and-set cells).
        self._on_book = on_book

    # -- watching --------------------------------------------------------------------------

    async def start(self) -> None:
        self._start_watches()
        with contextlib.suppress(TimeoutError):  # decisions wait for the sync themselves
            await self.wait(lambda: self._synced_at is not None, timeout=5.0)

    async def stop(self) -> None:
        await self._stop_watches()

    async def resync(self) -> None:
        """The connection came back: what the watches saw before may be stale or partial."""
        await self._stop_watches()
        self._start_watches()

    def _start_watches(self) -> None:
        self._synced.clear()
        self._synced_at = None
        self._watches = [
            asyncio.create_task(self._watch("reports", self._worker_slots, ">")),
            asyncio.create_task(self._watch("books", self._admissions, f"{BOOK_PREFIX}>")),
        ]

    async def _stop_watches(self) -> None:
        await cancel_and_wait(*self._watches)  # a KV watch may swallow one cancel
        self._watches = []

    async def _watch(self, name: str, kv: KeyValue, keys: str) -> None:
        while True:
            try:
                watcher = await kv.watch(keys)
                try:
                    async for entry in watcher:
                        if entry is None:  # the initial values are all in
                            self._synced.add(name)
                            if self._synced >= {"reports", "books"} and self._synced_at is None:
                                self._synced_at = time.monotonic()
                        elif name == "reports":
                            self._on_report(entry.key, entry.value, entry.operation)
                        else:
                            deleted = entry.operation in ("DEL", "PURGE") or not entry.value
                            document = None if deleted else _json(entry.value)
                            self.learn(entry.key, entry.revision or 0, document)
                            if self._on_book is not None:
                                self._on_book(entry.key, entry.revision or 0, document)
                        self.changed.set()
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s watch failed, restarting: %s", name, type(error).__name__)
                await asyncio.sleep(WATCH_RETRY_S)  # back-off before re-subscribing

    def _on_report(self, worker: str, value: bytes | None, operation: str | None) -> None:
        if operation in ("DEL", "PURGE") or not value:
            self.reports.pop(worker, None)  # a worker that stopped says so: gone at once
            return
        try:
            report = json.loads(value)
            # A report read back after a (re)sync may be old: age it by its own timestamp.
            age = max(0.0, time.time() - float(report.get("at", time.time())))
            self.reports[worker] = WorkerReport(
                free=int(report["free"]),
                capacity=int(report["capacity"]),
                draining=bool(report.get("draining", False)),
                seen_at=time.monotonic() - age,
                active=int(report.get("active", 0)),
                unbooked=_unbooked(report),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable slot report ignored")

    def learn(self, key: str, revision: int, document: Document | None) -> None:
        """A book's value at `revision`, from the watch or this process's own compare-and-set;
        an older revision than the one known is ignored."""
        worker = book_worker(key)
        if worker is None:
            return
        known = self._books.get(worker)
        if known is not None and revision and known[0] > revision:
            return
        self._books[worker] = (revision, document)
        self.changed.set()

    # -- reading ---------------------------------------------------------------------------

    def booked(self) -> dict[str, set[str]]:
        now = time.time()
        return {w: set(live_calls(doc, now)) for w, (_, doc) in self._books.items() if doc}

    def standing(self) -> Standing:
        return standing(
            self.reports, self.booked(), time.monotonic(), self.stale_after_s, self._limbo_s
        )

    def sure(self, view: Standing) -> bool:
        """Sure enough to refuse: synced, settled, some live worker, none in limbo."""
        synced_at = self._synced_at
        settled = synced_at is not None and time.monotonic() >= synced_at + self._settle_s
        return view.sure and settled

    def until_clearer(self) -> float:
        """How long until the view may become sure by time alone (settling, limbo ending)."""
        now = time.monotonic()
        moments = [] if self._synced_at is None else [self._synced_at + self._settle_s]
        moments += [r.seen_at + self.stale_after_s + self._limbo_s for r in self.reports.values()]
        later = [moment - now for moment in moments if moment > now]
        return max(0.05, min(later, default=1.0))

    def booking_of(self, call_id: str) -> str | None:
        now = time.time()
        for worker, (_, doc) in self._books.items():
            if call_id in live_calls(doc, now):
                return worker
        return None

    def free_reported(self) -> int:
        """Free slots as the live, non-draining workers report them."""
        now = time.monotonic()
        return sum(
            max(0, r.free)
            for r in self.reports.values()
            if not r.draining and now - r.seen_at < self.stale_after_s
        )

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Until `predicate()` holds, re-checked on every change of the view."""
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()
                if predicate():
                    return
                await self.changed.wait()

    # -- `booking.Look` --------------------------------------------------------------------

    def capacity(self, worker: str) -> int:
        """The worker's capacity; 0 unless it is live and not draining (it takes no call)."""
        report = self.reports.get(worker)
        state = liveness(report, time.monotonic(), self.stale_after_s, self._limbo_s)
        if report is None or report.draining or state != Liveness.LIVE:
            return 0
        return report.capacity

    def until_of(self, worker: str, call_id: str) -> float | None:
        _, doc = self._books.get(worker, (0, None))
        return live_calls(doc, time.time()).get(call_id)

    def now(self) -> float:
        return time.time()


def _unbooked(report: dict[str, object]) -> int:
    """Calls the worker runs that no book holds: as it says, or, from a report that names
    neither (not from a session worker of this version), all it says are busy."""
    if "unbooked" in report:
        return int(str(report["unbooked"]))
    if "active" in report:
        return 0
    return max(0, int(str(report["capacity"])) - int(str(report["free"])))


def _json(value: bytes | None) -> Document | None:
    try:
        document = json.loads(value or b"")
    except ValueError:
        log.warning("unreadable admission book ignored")
        return None
    return document if isinstance(document, dict) else None
