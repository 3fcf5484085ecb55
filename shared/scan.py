"""Reading a stream forward from a sequence or a time, for history and replays.

An ordered consumer (ephemeral, flow-controlled, resumed by the client after a gap) reads
the stored messages in order; the reader stops when it has what it wants, or when the
stream has nothing more right now. Nothing is acknowledged and nothing is left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

IDLE_TIMEOUT_S = 2.0


async def scan(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
) -> AsyncIterator[Msg]:
    """The messages of `stream` on `subject` (wildcards allowed) from a sequence or time,
    in order, up to the last one stored when the scan reached it."""
    info = await js.stream_info(stream)
    if info.state.messages == 0 or (start_seq is not None and start_seq > info.state.last_seq):
        return
    if start_seq is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=max(start_seq, 1))  # fmt: skip
    elif start_time is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                opt_start_time=start_time)  # fmt: skip
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    try:
        state = await sub.consumer_info()
        if state.num_pending == 0 and (
            state.delivered is None or state.delivered.consumer_seq == 0
        ):
            return  # nothing stored from that point on: do not wait for the idle timeout
        while True:
            try:
                msg = await sub.next_msg(timeout=IDLE_TIMEOUT_S)
            except NatsTimeout:
                return  # nothing (more) from that point on
            yield msg
            if msg.metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
