"""`CallLease`: which worker owns a call, with a fencing token; `take` and `keep` it.

JetStream alone cannot give exclusive ownership (a late ack or +WPI from a worker that lost
its delivery is still accepted), so ownership lives in a KV key per call: created only if
absent, with a TTL, renewed by compare-and-set with a fresh TTL. The revision is the
fencing token: a worker whose compare-and-set fails has lost the call and must not act on
it any more. Before each side effect `confirm` asks the clock, and past it (the worker or
nats-server was paused) a renewal: one that lands proves nobody took the call meanwhile, so
a second's silence does not cost a call its owner (and its transcript the words said while
another worker re-attached). A renewal whose reply was lost but which landed is recognised
by its value (this worker, this attempt), not taken for another owner's; one that lapsed on
the server while nobody took it is taken back if the call's journal shows nobody acted on
the call since this owner did.

The lease and the JetStream delivery of the call's job live together: `take` waits a
little for a dead owner's lease to lapse while keeping the delivery ours, `keep` renews
both while the call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.leases import LeaseValue
from shared.nats import lost_race
from shared.streams import CALL_LEASES_BUCKET

log = logging.getLogger(__name__)

# Act only while the lease has this much life left: a clock margin against a renewal that
# is in flight while another worker's create already waits for the expiry.
_SAFETY_MARGIN_S = 0.5
_RECONFIRM_S = 0.1  # between renewals a side effect waits on while nats-server is silent


class LeaseLost(Exception):
    pass


@dataclass(frozen=True)
class LeaseHolder:
    worker: str
    attempt: int
    revision: int


class CallLease:
    def __init__(
        self, js: JetStreamContext, kv: KeyValue, call_id: str, worker: str, ttl_s: int
    ) -> None:
        self._js = js
        self._kv = kv
        self.call_id = call_id
        self.worker = worker
        self.ttl_s = ttl_s
        self.attempt = 0
        self.revision = 0
        self._renewed_at = 0.0
        self._over = False  # lost or released: nothing may renew it back
        # Whether the call's last event is one of this owner's (`CallJournal.wrote_last`):
        # a lease that lapsed on the server is taken back only then. None: never taken back.
        self.wrote_last: Callable[[], Awaitable[bool]] | None = None
        self._renewing = asyncio.Lock()  # one compare-and-set in flight: revisions in order

    def _value(self) -> bytes:
        return LeaseValue(worker=self.worker, attempt=self.attempt).encode()

    async def acquire(self) -> bool:
        """Take the call if nobody holds it; False if another worker does."""
        started = time.monotonic()
        try:
            self.revision = await self._kv.create(self.call_id, self._value(), msg_ttl=self.ttl_s)
        except KeyWrongLastSequenceError:
            return False
        self._renewed_at = started
        return True

    async def acquire_within(self, patience_s: float, poll_s: float = 0.1) -> bool:
        """Take the call, waiting up to `patience_s` for a holder's lease to lapse.

        After a crash the job is redelivered about when the dead worker's lease expires;
        polling for that moment re-attaches sooner than returning the job and waiting for
        another delivery. KV expiry is silent to watchers, hence the polling.
        """
        deadline = time.monotonic() + patience_s
        while True:
            if await self.acquire():
                return True
            if time.monotonic() + poll_s > deadline:
                return False
            await asyncio.sleep(poll_s)  # waiting for a server-side TTL to lapse

    async def holder(self) -> LeaseHolder | None:
        """Who holds the call now (None: nobody)."""
        try:
            entry = await self._kv.get(self.call_id)
        except KeyNotFoundError:
            return None
        value = LeaseValue.decode(entry.value)
        if value is None:
            return LeaseHolder("?", 0, entry.revision or 0)
        return LeaseHolder(value.worker, value.attempt, entry.revision or 0)

    async def renew(self) -> None:
        """Extend the lease by compare-and-set with a fresh TTL (the KV API's update has no
        TTL, so this publishes to the bucket subject itself); raises LeaseLost."""
        async with self._renewing:
            await self._renew()

    async def _renew(self) -> None:
        if self._over:
            raise LeaseLost(self.call_id)
        started = time.monotonic()
        for retry in (False, True):
            try:
                ack = await self._js.publish(
                    f"$KV.{CALL_LEASES_BUCKET}.{self.call_id}",
                    self._value(),
                    headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(self.revision)},
                    msg_ttl=self.ttl_s,
                    timeout=max(0.5, self.ttl_s / 3),
                )
            except APIError as error:
                if not lost_race(error):
                    raise
                recovered = None if retry else await self._recover()
                if recovered == "renew":
                    continue
                if recovered == "held":
                    return
                self._renewed_at, self._over = 0.0, True
                raise LeaseLost(self.call_id) from None
            self.revision = ack.seq
            self._renewed_at = started
            return

    async def _recover(self) -> Literal["renew", "held", "lost"]:
        """After a failed compare-and-set: is the call still ours after all?

        "renew": the key holds our own value at a revision we never saw (a renewal whose
        reply timed out had landed). "held": the key lapsed on the server (nats-server was
        silent longer than the TTL) and nobody took it: taken again, kept if nobody acted
        on the call meanwhile (`wrote_last`). Without these, one slow reply or a few
        seconds' silence dropped a call nobody else owned, and what was said until it was
        re-attached."""
        holder = await self.holder()
        if holder is None:
            return "held" if await self._retake() else "lost"
        ours = (holder.worker, holder.attempt) == (self.worker, self.attempt)
        if ours and holder.revision > self.revision:
            self.revision = holder.revision
            return "renew"
        return "lost"

    async def _retake(self) -> bool:
        if self.wrote_last is None:
            return False
        started = time.monotonic()
        try:
            revision = await self._kv.create(self.call_id, self._value(), msg_ttl=self.ttl_s)
        except KeyWrongLastSequenceError:
            return False  # another worker's now
        # Taken: nobody can act on the call from here on. Nobody did in between either,
        # unless the call's journal has an event since our last one. A check that cannot
        # be made gives the key back too: else the next renewal would adopt it unchecked.
        kept = False
        try:
            kept = await self.wrote_last()
            if kept:
                self.revision, self._renewed_at = revision, started
            return kept
        finally:
            if not kept:
                with contextlib.suppress(NatsError):
                    await self._kv.delete(self.call_id, last=revision)

    def held(self) -> bool:
        """True while the last renewal still covers now."""
        return time.monotonic() < self._renewed_at + self.ttl_s - _SAFETY_MARGIN_S

    def lapsed(self) -> bool:
        """True when nats-server has not answered for a whole TTL past the lease's end: the
        call is given up rather than waited for any longer."""
        return time.monotonic() > self._renewed_at + 2 * self.ttl_s

    async def confirm(self) -> None:
        """Return while the call is ours, else LeaseLost: call before every side effect.
        The clock answers without a round trip. Past it (this process or nats-server was
        paused a second, say) a renewal does, since a compare-and-set that lands proves
        nobody took the call meanwhile; while nats-server does not answer, the side effect
        waits, until the lease has `lapsed()`."""
        if self.held():
            return
        async with self._renewing:  # the heartbeat's renewal may be the one in flight
            if self.revision == 0:
                raise LeaseLost(self.call_id)  # never taken
            while not self.held():
                try:
                    await self._renew()
                except LeaseLost:
                    raise
                except Exception:
                    if self.lapsed():
                        self._over = True
                        raise LeaseLost(self.call_id) from None
                    await asyncio.sleep(_RECONFIRM_S)  # back-off, not synchronisation

    async def release(self) -> None:
        """Give the call up (it ended, or it is handed to another worker). Best effort: a
        delete JetStream cannot take now (its bucket electing a leader, say) leaves the
        lease to lapse by its TTL, which only delays a next owner by that much."""
        if not self.held():
            return
        self._renewed_at, self._over = 0.0, True  # fenced now, whatever the delete answers
        try:
            await self._kv.delete(self.call_id, last=self.revision)
        except (KeyWrongLastSequenceError, APIError):
            pass  # already someone else's, or expired: nothing of ours to delete
        except NatsError as error:
            log.warning(
                "lease not released, it lapses in %ss: %s", self.ttl_s, type(error).__name__
            )


class Delivery(Protocol):
    """The JetStream delivery of the call's job (a `nats.aio.msg.Msg`)."""

    async def in_progress(self) -> None: ...


async def take(lease: CallLease, delivery: Delivery, give_up: Callable[[], bool]) -> bool:
    """The lease, waiting a little for a dead owner's to lapse (its job was redelivered
    about when its lease expires), with +WPI so the delivery stays ours meanwhile; False
    when another worker holds it, or `give_up()` turns true (a hand-off was asked for)."""
    if await lease.acquire():
        return True
    deadline = time.monotonic() + lease.ttl_s + 1.5
    beat = time.monotonic()
    while time.monotonic() < deadline and not give_up():
        if time.monotonic() - beat >= 1.0:
            beat = time.monotonic()
            await delivery.in_progress()
        if await lease.acquire_within(0.5):
            return True
    return False


async def keep(
    lease: CallLease, delivery: Delivery, period_s: float, lost: Callable[[], Awaitable[None]]
) -> None:
    """Renew the lease and the delivery every `period_s` until cancelled; the delivery only
    while the lease holds (acks are not fenced by JetStream). Calls `lost()` and returns
    when the lease is someone else's, or nats-server stayed silent until it `lapsed()`."""
    while True:
        await asyncio.sleep(period_s)
        try:
            await lease.renew()
        except LeaseLost:
            await lost()
            return
        except Exception as error:  # NATS hiccup: the next beat may succeed
            log.warning("lease renewal failed: %s", type(error).__name__)
            if lease.lapsed():
                await lost()
                return
            continue
        try:
            await delivery.in_progress()
        except Exception as error:
            log.warning("in-progress ack failed: %s", type(error).__name__)
