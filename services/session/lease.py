"""`CallLease`: which worker owns a call, with a fencing token.

JetStream alone cannot give exclusive ownership (a late ack or +WPI from a worker that lost
its delivery is still accepted), so ownership lives in a KV key per call: created only if
absent, with a TTL, renewed by compare-and-set with a fresh TTL. The revision is the
fencing token: a worker whose renewal failed, or whose last renewal is older than the TTL
(it was paused, say), has lost the call and must not act on it any more.
"""

from __future__ import annotations

import json
import time

from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.streams import CALL_LEASES_BUCKET

_WRONG_LAST_SEQUENCE = (10071, 10164)
# Act only while the lease has this much life left: a clock margin against a renewal that
# is in flight while another worker's create already waits for the expiry.
_SAFETY_MARGIN_S = 0.5


class LeaseLost(Exception):
    pass


class CallLease:
    def __init__(
        self, js: JetStreamContext, kv: KeyValue, call_id: str, worker: str, ttl_s: int
    ) -> None:
        self._js = js
        self._kv = kv
        self.call_id = call_id
        self.worker = worker
        self.ttl_s = ttl_s
        self.revision = 0
        self._renewed_at = 0.0

    def _value(self, attempt: int) -> bytes:
        return json.dumps({"worker": self.worker, "attempt": attempt}).encode()

    async def acquire(self, attempt: int) -> bool:
        """Take the call if nobody holds it; False if another worker does."""
        started = time.monotonic()
        try:
            self.revision = await self._kv.create(
                self.call_id, self._value(attempt), msg_ttl=self.ttl_s
            )
        except KeyWrongLastSequenceError:
            return False
        self._renewed_at = started
        self.attempt = attempt
        return True

    async def renew(self) -> None:
        """Extend the lease by compare-and-set with a fresh TTL (the KV API's update has no
        TTL, so this publishes to the bucket subject itself); raises LeaseLost."""
        started = time.monotonic()
        try:
            ack = await self._js.publish(
                f"$KV.{CALL_LEASES_BUCKET}.{self.call_id}",
                self._value(self.attempt),
                headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(self.revision)},
                msg_ttl=self.ttl_s,
                timeout=max(0.5, self.ttl_s / 3),
            )
        except APIError as error:
            if error.err_code in _WRONG_LAST_SEQUENCE:
                self._renewed_at = 0.0
                raise LeaseLost(self.call_id) from None
            raise
        self.revision = ack.seq
        self._renewed_at = started

    def held(self) -> bool:
        """True while the last renewal still covers now: check before every side effect."""
        return time.monotonic() < self._renewed_at + self.ttl_s - _SAFETY_MARGIN_S

    async def release(self) -> None:
        """Give the call up (it ended, or it is handed to another worker)."""
        if not self.held():
            return
        try:
            await self._kv.delete(self.call_id, last=self.revision)
        except (KeyWrongLastSequenceError, APIError):
            pass  # already someone else's, or expired: nothing of ours to delete
        self._renewed_at = 0.0
