"""NATS backlog as Prometheus gauges, read from JetStream consumer info.

Operators need to see calls waiting in NATS (webhooks the acceptor has not taken, accepted
calls no session worker has claimed) next to Switchboard's own metrics, without depending
on a separate NATS exporter. The acceptor runs this: if every session worker dies, it is
the process still alive to report the session backlog growing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from nats.aio.client import Client
from nats.errors import ConnectionClosedError
from nats.js.errors import NotFoundError

from shared import metrics
from shared.streams import (
    ACCEPTOR_CONSUMER,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    WEBHOOKS_STREAM,
)

log = logging.getLogger(__name__)

# (stream, durable consumer) pairs whose backlog matters to operators.
WATCHED: tuple[tuple[str, str], ...] = (
    (WEBHOOKS_STREAM, ACCEPTOR_CONSUMER),
    (SESSIONS_STREAM, SESSION_CONSUMER),
)
PERIOD_S = 5.0  # Prometheus scrapes every 5-15 s; fresher numbers would not be seen
INFO_TIMEOUT_S = 2.0


async def poll_backlog(nc: Client, consumers: Sequence[tuple[str, str]] = WATCHED) -> None:
    """Read each consumer's pending counts once and set the gauges."""
    js = nc.jetstream(timeout=INFO_TIMEOUT_S)
    for stream, consumer in consumers:
        try:
            info = await js.consumer_info(stream, consumer)
        except NotFoundError:
            continue  # not declared yet: nothing is waiting on it either
        metrics.NATS_CONSUMER_PENDING.labels(stream, consumer).set(info.num_pending or 0)
        metrics.NATS_CONSUMER_ACK_PENDING.labels(stream, consumer).set(info.num_ack_pending or 0)


async def _watch(nc: Client, consumers: Sequence[tuple[str, str]], period_s: float) -> None:
    while not nc.is_closed:
        try:
            await poll_backlog(nc, consumers)
        except ConnectionClosedError:
            return
        except Exception as error:  # a reconnect or a slow server: the next poll may work
            log.debug("backlog poll failed: %s", type(error).__name__)
        await asyncio.sleep(period_s)


_running: set[asyncio.Task[None]] = set()


def watch_backlog(
    nc: Client, consumers: Sequence[tuple[str, str]] = WATCHED, period_s: float = PERIOD_S
) -> asyncio.Task[None]:
    """Poll the backlog every `period_s` until `nc` is closed (so the owner needs no stop
    call: closing its connection ends the watch)."""
    task = asyncio.create_task(_watch(nc, consumers, period_s), name="backlog-watch")
    _running.add(task)  # keep a reference: the loop holds tasks only weakly
    task.add_done_callback(_running.discard)
    return task
