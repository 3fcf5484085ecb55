"""One NATS connection per process, reconnecting forever.

An outage must never need a restart: the client keeps reconnecting, and readiness
reflects whether it is connected right now.
"""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.js.errors import APIError

log = logging.getLogger(__name__)


async def connect(servers: list[str], name: str) -> Client:
    async def disconnected() -> None:
        log.warning("nats disconnected")

    async def reconnected() -> None:
        log.info("nats reconnected")

    async def error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        pending_size=64 * 1024 * 1024,
    )


# JetStream's answers to a publish whose `Nats-Expected-Last-Subject-Sequence` no longer
# holds: somebody else wrote the subject first.
_WRONG_LAST_SEQUENCE = (10071, 10164)


def lost_race(error: APIError) -> bool:
    """True when a compare-and-set publish was refused because the subject moved on."""
    return error.err_code in _WRONG_LAST_SEQUENCE
