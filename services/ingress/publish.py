"""Making one verified incoming call durable: `call.received` and the webhook message,
published together (one socket write, one wait), answered 200 only once both are stored.

`call.received` is the call's first event (`seq` 1) whoever stores it
(`shared/received.py`): the acceptor may see the webhook before this publish lands, and
then stores the very same event itself before it decides. A failure of either publish
answers 503, so OpenAI's retry finishes the job (each is idempotent).

The webhook message carries `Nats-Msg-Id = webhook-id`: the same delivery twice is one
message in the stream. The same call under another webhook id is a second message; the
acceptor's claim on the call id makes that one accept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from enum import StrEnum

from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

from shared.calls import IncomingCall
from shared.received import publish_received
from shared.streams import INCOMING_CALL_SUBJECT, LIVE_INCOMING_CALL_SUBJECT, WEBHOOKS_STREAM

# Calls whose `call.received` this process knows to be stored (~100 bytes each).
RECENT_CALLS = 65_536


class Published(StrEnum):
    NEW = "published"  # first time this webhook id reached the stream
    DUPLICATE = "duplicate"  # the stream already had this webhook id


class CallPublisher:
    """Publishes verified calls; one per process, shared by all requests.

    Repeats of a call that this process already received skip the `call.received`
    publish altogether (a round trip saved): concurrent copies wait for the first one's
    outcome, later ones find the call in a bounded memory of recent calls. What that memory
    misses (another replica, a retry hours later) is refused by JetStream, so the stream
    (and the live `calls.events.<call_id>` feed it republishes) never holds a second
    `call.received`.
    """

    def __init__(
        self, js: JetStreamContext, *, timeout_s: float, remember: int = RECENT_CALLS
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s
        self._remember = remember
        self._received: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[bool]] = {}

    async def publish(self, call: IncomingCall) -> Published:
        """`call.received` (unless the call has events) and the webhook message, together.

        Raises whatever NATS raises (timeout, no responders, disconnected) for either: the
        other may have been stored, and a retry with the same webhook id is harmless (both
        are idempotent).
        """
        received, published = await asyncio.gather(
            self._ensure_received(call), self._publish_webhook(call), return_exceptions=True
        )
        for outcome in (received, published):
            if isinstance(outcome, BaseException):
                raise outcome
        assert not isinstance(published, BaseException)
        return Published.DUPLICATE if published.duplicate else Published.NEW

    async def _publish_webhook(self, call: IncomingCall) -> PubAck:
        return await self._js.publish(
            LIVE_INCOMING_CALL_SUBJECT if call.api == "live" else INCOMING_CALL_SUBJECT,
            call.model_dump_json().encode(),
            timeout=self._timeout_s,
            stream=WEBHOOKS_STREAM,
            headers={Header.MSG_ID.value: call.webhook_id},
        )

    async def _ensure_received(self, call: IncomingCall) -> None:
        call_id = call.call_id
        while call_id not in self._received:
            pending = self._in_flight.get(call_id)
            if pending is not None:
                await asyncio.shield(pending)  # then look again: done, or our turn to try
                continue
            outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._in_flight[call_id] = outcome
            try:
                await publish_received(self._js, call, self._timeout_s)
                self._remember_received(call_id)
            finally:
                del self._in_flight[call_id]
                outcome.set_result(call_id in self._received)

    def _remember_received(self, call_id: str) -> None:
        self._received[call_id] = None
        self._received.move_to_end(call_id)
        while len(self._received) > self._remember:
            self._received.popitem(last=False)
