"""Making one verified incoming call durable: `call.received`, then the webhook message.

Order is the guarantee: `call.received` is stored before the acceptor can see the call,
so it is always the call's first event (seq 1), and a failure between the two publishes
answers 503 so OpenAI's retry finishes the job.

`call.received` is published with `Nats-Expected-Last-Subject-Sequence: 0`: JetStream
stores it only while the call has no event at all. That makes it once per call for ever,
not only within the 120 s dedupe window (OpenAI retries for 72 hours, under the same or a
new webhook id), and it needs no read of the call's last event first, so a new call costs
two round trips to NATS, not three. The `Nats-Msg-Id` keeps the usual dedupe as well.

The webhook message carries `Nats-Msg-Id = webhook-id`: the same delivery twice is one
message in the stream. The same call under another webhook id is a second message; the
acceptor's claim on the call id makes that one accept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from enum import StrEnum

from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError

from shared.calls import IncomingCall
from shared.events import CALL_EVENTS_STREAM, CallEvent, EventType, journal_subject
from shared.nats import lost_race
from shared.streams import INCOMING_CALL_SUBJECT, LIVE_INCOMING_CALL_SUBJECT, WEBHOOKS_STREAM

# Calls whose `call.received` this process knows to be stored (~100 bytes each).
RECENT_CALLS = 65_536


class Published(StrEnum):
    NEW = "published"  # first time this webhook id reached the stream
    DUPLICATE = "duplicate"  # the stream already had this webhook id


def received_event(call: IncomingCall) -> CallEvent:
    """The call's first event, stamped with the moment its webhook arrived."""
    return CallEvent(
        type=EventType.CALL_RECEIVED,
        call_id=call.call_id,
        seq=1,
        ts=call.received_at,
        data={
            "api": call.api,  # which OpenAI API the call came through (contract)
            "webhook_id": call.webhook_id,
            "sip_headers": [h.model_dump() for h in call.sip_headers],
        },
    )


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
        """`call.received` (unless the call has events) then the webhook message.

        Raises whatever NATS raises (timeout, no responders, disconnected): nothing after
        the failing step was published, and a retry with the same webhook id is harmless.
        """
        await self._ensure_received(call)
        ack = await self._js.publish(
            LIVE_INCOMING_CALL_SUBJECT if call.api == "live" else INCOMING_CALL_SUBJECT,
            call.model_dump_json().encode(),
            timeout=self._timeout_s,
            stream=WEBHOOKS_STREAM,
            headers={Header.MSG_ID.value: call.webhook_id},
        )
        return Published.DUPLICATE if ack.duplicate else Published.NEW

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
                await self._publish_received(call)
                self._remember_received(call_id)
            finally:
                del self._in_flight[call_id]
                outcome.set_result(call_id in self._received)

    async def _publish_received(self, call: IncomingCall) -> None:
        try:
            ack = await self._js.publish(
                journal_subject(call.call_id),
                received_event(call).to_json(),
                timeout=self._timeout_s,
                stream=CALL_EVENTS_STREAM,
                headers={
                    Header.MSG_ID.value: f"received:{call.call_id}",
                    Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: "0",
                },
            )
        except APIError as error:
            if not lost_race(error):
                raise
            # The call already has events: it was received before (a retry or a new id).
            return
        if not ack.duplicate:
            call.received_stream_seq = ack.seq  # the acceptor's first event follows it

    def _remember_received(self, call_id: str) -> None:
        self._received[call_id] = None
        self._received.move_to_end(call_id)
        while len(self._received) > self._remember:
            self._received.popitem(last=False)
