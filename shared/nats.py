"""One NATS connection per process, reconnecting forever.

An outage must never need a restart: the client keeps reconnecting, and readiness
reflects whether it is connected right now.
"""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client

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
