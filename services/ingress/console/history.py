"""Where the console reads past events: the `CALL_EVENTS` stream, directly.

Kept behind this small surface so that the history API (`GET /calls/{id}/events`,
`GET /calls?since=…`) can take over without the feed or the routes changing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared.events import (
    CALL_EVENTS_STREAM,
    CALL_JOURNAL_SUBJECT,
    CallEvent,
    journal_subject,
    read_call_events,
)


async def call_events(js: JetStreamContext, call_id: str) -> list[CallEvent]:
    """Every stored event of one call, in `seq` order."""
    return await read_call_events(js, call_id)


async def first_events(js: JetStreamContext, call_id: str, count: int) -> list[CallEvent]:
    """A call's first `count` events (who called whom, which agent) without reading the
    rest: one direct lookup each."""
    events: list[CallEvent] = []
    seq = 1
    subject = journal_subject(call_id)
    for _ in range(count):
        try:
            msg = await js.get_msg(CALL_EVENTS_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        try:
            events.append(CallEvent.model_validate_json(msg.data or b""))
        except ValidationError:
            pass
        seq = (msg.seq or seq) + 1
    return events


async def tail(js: JetStreamContext, count: int) -> AsyncIterator[CallEvent]:
    """The stream's last `count` events, oldest first: enough to rebuild the recent calls
    and most live ones when a console feed starts."""
    try:
        state = (await js.stream_info(CALL_EVENTS_STREAM)).state
    except NotFoundError:
        return
    if state.messages == 0:
        return
    start = max(state.first_seq, state.last_seq - count + 1)
    sub = await js.subscribe(
        f"{CALL_JOURNAL_SUBJECT}.>",
        stream=CALL_EVENTS_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except (TimeoutError, NatsTimeout):
                return
            try:
                yield CallEvent.model_validate_json(msg.data)
            except ValidationError:
                pass
            if msg.metadata.sequence.stream >= state.last_seq or msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
