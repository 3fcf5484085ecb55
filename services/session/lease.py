"""`CallLease`: which worker owns a call, with a fencing token.

JetStream alone cannot give exclusive ownership (a late ack or +WPI from a worker that lost
its delivery is still accepted), so ownership lives in a KV key per call: created only if
absent, with a TTL, renewed by compare-and-set with a fresh TTL. The revision is the
fencing token: a worker whose renewal failed, or whose last renewal is older than the TTL
(it was paused, say), has lost the call and must not act on it any more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.nats import lost_race
from shared.streams import CALL_LEASES_BUCKET

log = logging.getLogger(__name__)

# Act only while the lease has this much life left: a clock margin against a renewal that
# is in flight while another worker's create already waits for the expiry.
_SAFETY_MARGIN_S = 0.5


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

    def _value(self) -> bytes:
        return json.dumps({"worker": self.worker, "attempt": self.attempt}).encode()

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
        try:
            value = json.loads(entry.value or b"{}")
            return LeaseHolder(str(value["worker"]), int(value["attempt"]), entry.revision or 0)
        except (ValueError, KeyError, TypeError):
            return LeaseHolder("?", 0, entry.revision or 0)

    async def renew(self) -> None:
        """Extend the lease by compare-and-set with a fresh TTL (the KV API's update has no
        TTL, so this publishes to the bucket subject itself); raises LeaseLost."""
        started = time.monotonic()
        try:
            ack = await self._js.publish(
                f"$KV.{CALL_LEASES_BUCKET}.{self.call_id}",
                self._value(),
                headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(self.revision)},
                msg_ttl=self.ttl_s,
                timeout=max(0.5, self.ttl_s / 3),
            )
        except APIError as error:
            if lost_race(error):
                self._renewed_at = 0.0
                raise LeaseLost(self.call_id) from None
            raise
        self.revision = ack.seq
        self._renewed_at = started

    def held(self) -> bool:
        """True while the last renewal still covers now: check before every side effect."""
        return time.monotonic() < self._renewed_at + self.ttl_s - _SAFETY_MARGIN_S

    async def release(self) -> None:
        """Give the call up (it ended, or it is handed to another worker). Best effort: a
        delete JetStream cannot take now (its bucket electing a leader, say) leaves the
        lease to lapse by its TTL, which only delays a next owner by that much."""
        if not self.held():
            return
        self._renewed_at = 0.0  # fenced from now on, whatever the delete answers
        try:
            await self._kv.delete(self.call_id, last=self.revision)
        except (KeyWrongLastSequenceError, APIError):
            pass  # already someone else's, or expired: nothing of ours to delete
        except NatsError as error:
            log.warning(
                "lease not released, it lapses in %ss: %s", self.ttl_s, type(error).__name__
            )
