"""`call.received`, a call's first event, and the one way it is stored.

The ingress publishes it beside the webhook message, and the acceptor, which can see the
webhook first, publishes the very same event when it finds the call's journal empty:
`Nats-Expected-Last-Subject-Sequence: 0` lets JetStream store it only while the call has
no event at all, so whoever is first, it is stored once and is always `seq` 1 (for ever,
not only within the dedupe window: OpenAI retries for 72 hours, under the same or a new
webhook id). The `Nats-Msg-Id` keeps the usual dedupe as well.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import Header, PubAck
from nats.js.errors import APIError

from shared.calls import IncomingCall
from shared.events import CALL_EVENTS_STREAM, CallEvent, EventType, journal_subject
from shared.nats import lost_race


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


async def publish_received(
    js: JetStreamContext, call: IncomingCall, timeout: float
) -> PubAck | None:
    """Store `call.received` unless the call has an event already (then None)."""
    try:
        return await js.publish(
            journal_subject(call.call_id),
            received_event(call).to_json(),
            timeout=timeout,
            stream=CALL_EVENTS_STREAM,
            headers={
                Header.MSG_ID.value: f"received:{call.call_id}",
                Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: "0",
            },
        )
    except APIError as error:
        if not lost_race(error):
            raise
        return None  # received before: a retry, a new webhook id, or the other writer
