"""Admission bookkeeping shared by the acceptor (which books) and the session worker
(which releases when a call ends), kept in the KV bucket `admissions`.

(Over 350 lines: the documents, their pure changes and the compare-and-set that applies
them are one format, shared by the acceptor and the session worker.)

Every key is a small JSON document changed only by compare-and-set on its revision, so
that acceptor replicas and restarts cannot overbook (KV, not memory):

- `agent.<name>`: the calls an agent with `limits.max_concurrent_calls` has now,
  `{"calls": {call_id: until}}`. A call enters at the accept decision and leaves when its
  session worker finishes it (`BookReleases.release_limit`).
- `book.<worker>`: the calls booked on that worker's capacity, `{"calls": {call_id:
  until}, "moved": {call_id: [worker, until]}}`. A call is booked once, at the accept
  decision, and stays booked until it ends (`BookReleases.release`), whichever worker runs it:
  a book counts calls, not the worker's own sockets. When a worker dies or drains, the
  acceptor moves its calls to the books of live workers and leaves a forwarding entry in
  `moved`, so the release that names the old book still finds the call.

`until` (epoch seconds) is a safety net in both: a call whose end was never recorded
stops counting once it cannot be alive any more (OpenAI ends every session after 60
minutes). The reasoning for why this is exact is in `shared/reservations.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from shared.agents import OPENAI_SESSION_CAP_S, AgentProfile
from shared.kv_keys import live_keys

log = logging.getLogger(__name__)

ADMISSIONS_BUCKET = "admissions"
BOOK_PREFIX = "book."
# How many forwarding entries a release follows (a call moves once per dead worker).
_MAX_HOPS = 8
# A call's entry outlives its longest possible life by this much.
LEDGER_MARGIN_S = 120.0
_CAS_ATTEMPTS = 100

T = TypeVar("T")
R = TypeVar("R")
Document = dict[str, Any]
Observer = Callable[[str, int, "Document | None"], None]


def agent_key(agent_name: str) -> str:
    return f"agent.{agent_name}"


def counts_toward_limit(agent: AgentProfile) -> bool:
    return agent.limits.max_concurrent_calls is not None


def call_until(agent: AgentProfile, now: float) -> float:
    """When a call of `agent` admitted `now` stops counting even if its end went unrecorded."""
    return now + min(agent.limits.max_duration_s, OPENAI_SESSION_CAP_S) + LEDGER_MARGIN_S


# -- pure changes to the documents --------------------------------------------------------


def live_calls(document: Document | None, now: float) -> dict[str, float]:
    calls = (document or {}).get("calls", {})
    return {call_id: until for call_id, until in calls.items() if until > now}


def without_call(document: Document | None, call_id: str, now: float) -> Document | None:
    """The agent document without `call_id` (and expired calls); None when nothing changes."""
    calls = (document or {}).get("calls", {})
    if call_id not in calls:
        return None
    remaining = live_calls(document, now)
    remaining.pop(call_id, None)
    return {"calls": remaining}


def book_key(worker: str) -> str:
    return f"{BOOK_PREFIX}{worker}"


def book_worker(key: str) -> str | None:
    """The worker a `book.<worker>` key belongs to (None for any other key)."""
    return key[len(BOOK_PREFIX) :] if key.startswith(BOOK_PREFIX) else None


def live_moves(document: Document | None, now: float) -> dict[str, list[Any]]:
    moved = (document or {}).get("moved", {})
    return {call_id: entry for call_id, entry in moved.items() if entry[1] > now}


def book_call(
    document: Document | None, call_id: str, now: float, until: float, capacity: int
) -> tuple[Document | None, bool]:
    """Book the call on this worker's capacity if there is room; a call already booked
    here (a redelivered webhook, say) stays booked without a write."""
    calls = live_calls(document, now)
    if call_id in calls:
        return None, True
    if len(calls) >= capacity:
        return None, False
    calls[call_id] = until
    return {"calls": calls, "moved": live_moves(document, now)}, True


def unbook_call(
    document: Document | None, call_id: str, now: float
) -> tuple[Document | None, str | None]:
    """Remove the call from this book: (new document or None for no write, the worker
    it was moved to when only a forwarding entry is here, or None)."""
    calls = live_calls(document, now)
    moved = live_moves(document, now)
    if call_id in calls:
        del calls[call_id]
        return {"calls": calls, "moved": moved}, None
    if call_id in moved:
        target = str(moved.pop(call_id)[0])
        return {"calls": calls, "moved": moved}, target
    return None, None


def move_out(
    document: Document | None, call_id: str, to_worker: str, now: float
) -> tuple[Document | None, bool]:
    """The call leaves this (dead or draining) book for `to_worker`'s, leaving a forwarding
    entry; True too when it already left for that very book (another decider moved it the
    same way); False when it is gone otherwise (it ended, or it moved elsewhere)."""
    calls = live_calls(document, now)
    moved = live_moves(document, now)
    until = calls.pop(call_id, None)
    if until is None:
        return None, call_id in moved and moved[call_id][0] == to_worker
    moved[call_id] = [to_worker, until]
    return {"calls": calls, "moved": moved}, True


# -- compare-and-set on one key -----------------------------------------------------------


class JsonCell:
    """One KV key holding a JSON document, changed only by compare-and-set.

    The last value and revision are cached, so a change is one round trip when nobody
    else wrote in between; a lost race reloads and decides again. Changes from this
    process are serialised by a lock instead of racing each other. A process that watches
    the key `offer`s what it sees, which keeps the cache fresh; one that does not and knows
    that others write between its changes reads first (`read_first`): two round trips
    instead of a refused write, a read and a write.
    """

    def __init__(
        self, kv: KeyValue, key: str, observer: Observer | None = None, *, read_first: bool = False
    ) -> None:
        self._kv = kv
        self.key = key
        self._revision: int | None = None  # None: not loaded; 0: the key does not exist
        self._document: Document | None = None
        self._lock = asyncio.Lock()
        self._observer = observer  # told every value read or written, with its revision
        self._read_first = read_first

    def offer(self, revision: int, document: Document | None) -> None:
        """The key's value at `revision`, seen by a watch: taken when newer than the cache
        and no change is in flight (a stale offer costs one refused write, as before)."""
        if self._lock.locked() or revision <= (self._revision or 0):
            return
        self._revision, self._document = revision, document

    def _seen(self) -> None:
        if self._observer is not None and self._revision is not None:
            self._observer(self.key, self._revision, self._document)

    async def _load(self) -> None:
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError as missing:
            # A deleted key: create() would fail, so compare against the delete marker.
            marker = missing.entry
            self._revision = (marker.revision or 0) if marker is not None else 0
            self._document = None
            self._seen()
            return
        self._revision = entry.revision or 0
        self._document = json.loads(entry.value) if entry.value else None
        self._seen()

    async def change(self, decide: Callable[[Document | None], tuple[Document | None, T]]) -> T:
        """Apply `decide(current) -> (new document or None for no write, result)`."""
        async with self._lock:
            if self._read_first:
                self._revision = None
            for _ in range(_CAS_ATTEMPTS):
                fresh = self._revision is None
                if fresh:
                    await self._load()
                new, result = decide(self._document)
                if new is None:
                    if not fresh:
                        # A decision not to write is not checked by the compare-and-set:
                        # make it on the current document, not on this process's cache.
                        self._revision = None
                        continue
                    return result
                value = json.dumps(new, separators=(",", ":")).encode()
                try:
                    if self._revision == 0:
                        revision = await self._kv.create(self.key, value)
                    else:
                        revision = await self._kv.update(self.key, value, last=self._revision)
                except KeyWrongLastSequenceError:
                    self._revision = None  # someone else wrote: reload and decide again
                    continue
                except BaseException:
                    self._revision = None  # unknown outcome: never trust the cache
                    raise
                self._revision, self._document = revision, new
                self._seen()
                return result
            raise RuntimeError(f"admission key {self.key} is contended beyond reason")


@dataclass(frozen=True)
class Change(Generic[T]):
    """One compare-and-set a procedure asks for: `decide(current) -> (new or None, result)`."""

    key: str
    decide: Callable[[Document | None], tuple[Document | None, T]]


# A procedure over several keys, written as a generator of changes so that it stays pure:
# KV runs it here (`run_steps`), the model test runs it against an in-memory store with
# other procedures' steps interleaved.
Steps = Generator[Change[Any], Any, R]


async def run_steps(steps: Steps[R], cell: Callable[[str], JsonCell]) -> R:
    """Run a procedure's changes, one compare-and-set each, on `cell(key)`."""
    try:
        change = next(steps)
        while True:
            change = steps.send(await cell(change.key).change(change.decide))
    except StopIteration as done:
        return cast(R, done.value)


def release_steps(call_id: str, worker: str, now: Callable[[], float]) -> Steps[bool]:
    """Release the call's booking, following forwarding entries; False if not found."""
    for _ in range(_MAX_HOPS):
        found, target = yield Change(book_key(worker), lambda doc: _unbooked(doc, call_id, now()))
        if target is None:
            return bool(found)
        worker = target
    return False


def _unbooked(
    document: Document | None, call_id: str, now: float
) -> tuple[Document | None, tuple[bool, str | None]]:
    new, target = unbook_call(document, call_id, now)
    return new, (new is not None and target is None, target)


async def unbook(kv: KeyValue, call_id: str, worker: str) -> bool:
    """Release the call's booking in KV (see `release_steps`)."""
    return await run_steps(release_steps(call_id, worker, time.time), lambda key: JsonCell(kv, key))


async def find_booking(js: JetStreamContext, kv: KeyValue, call_id: str) -> str | None:
    """The worker whose book holds the call, by reading every book (a rare path: a job
    made before bookings were named in it)."""
    for key in await live_keys(js, ADMISSIONS_BUCKET):
        worker = book_worker(key)
        if worker is None:
            continue
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        if call_id in live_calls(json.loads(entry.value or b"{}"), time.time()):
            return worker
    return None


class BookReleases:
    """A session worker's releases of what its ended calls held here: their bookings and
    their places under their agents' limits. The bucket is looked up once, not per call,
    and cells are serialised per book, so calls ending at once (a rolling restart's
    hang-ups) queue on a read and a write each instead of racing each other's
    compare-and-set on the same book."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._cells: dict[str, JsonCell] = {}

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(ADMISSIONS_BUCKET)
        return self._kv

    async def release_limit(self, call_id: str, agent: AgentProfile) -> None:
        """The call no longer counts toward its agent's concurrent-call limit. Called once
        by the session worker that finishes the call. Never raises: a release that fails
        is healed by the entry's own expiry, and must not disturb the call's end."""
        if not counts_toward_limit(agent):
            return
        try:
            cell = JsonCell(await self._bucket(), agent_key(agent.name))
            await cell.change(lambda doc: (without_call(doc, call_id, time.time()), None))
        except BucketNotFoundError:
            return
        except Exception as error:
            log.warning("admission release failed (heals by expiry): %s", type(error).__name__)

    def _cell(self, key: str) -> JsonCell:
        assert self._kv is not None
        cell = self._cells.get(key)
        if cell is None:
            # Acceptors book into this worker's book between two of its releases.
            cell = self._cells[key] = JsonCell(self._kv, key, read_first=True)
        return cell

    async def release(self, call_id: str, worker: str | None) -> None:
        """The call has ended: it no longer counts against the fleet's capacity. `worker`
        is the book named in the call's job (None: look for it). Never raises: a release
        that fails is healed by the entry's own expiry."""
        try:
            kv = await self._bucket()
            if worker is None:
                worker = await find_booking(self._js, kv, call_id)
                if worker is None:
                    return
            await run_steps(release_steps(call_id, worker, time.time), self._cell)
        except BucketNotFoundError:
            return
        except Exception as error:
            log.warning("booking release failed (heals by expiry): %s", type(error).__name__)


async def admissions_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The bucket, created if absent (idempotent; keys carry their own expiry)."""
    return await js.create_key_value(
        KeyValueConfig(
            bucket=ADMISSIONS_BUCKET, history=1, replicas=replicas, storage=StorageType.FILE
        )
    )
