"""The real parts a test needs, started in-process on loopback.

The stack itself (`Stack`, `EventLog`) lives in `switchboard.stack`, shared with the
benchmarks; what only tests use is here.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from switchboard.stack import API_KEY, EventLog, Stack, new_webhook_secret

__all__ = ["API_KEY", "EventLog", "Stack", "deliveries", "new_webhook_secret"]


async def deliveries(
    js: JetStreamContext, stream: str, consumer: str, times: int, timeout: float = 15.0
) -> None:
    """Until `consumer` has made `times` deliveries, redeliveries included (polled:
    JetStream announces no redelivery)."""
    async with asyncio.timeout(timeout):
        while True:
            info = await js.consumer_info(stream, consumer)
            if info.delivered.consumer_seq >= times:
                return
            await asyncio.sleep(0.05)
