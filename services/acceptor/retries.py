"""How the acceptor retries what JetStream refuses for a while (a leader election takes
seconds): a write after an accept is retried in place, then the whole handling is tried
again by the same acceptor (`Acceptor._decide`), after `redelivery_delay`.

A handling tried again resumes from its claim; one whose claim still says `accepting` asks
the sideband before accepting again (`CallAcceptor._accepted_before`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the writes after a successful accept are retried in place before giving the
# webhook back for redelivery.
WRITE_RETRY_S = 20.0
WRITE_BACKOFF = Backoff(first_s=0.05, max_s=1.0)
# A webhook whose handling failed (JetStream refusing writes while a leader is elected, say)
# is tried again after this delay, doubling per try up to the cap. Tried again at once, it
# spent all of its deliveries in a few milliseconds and the call was lost.
REDELIVERY = Backoff(first_s=0.1, max_s=1.0)


def redelivery_delay(delivery: int) -> float:
    """How long a webhook whose `delivery`-th handling failed waits before the next one
    (a try in place counts as a delivery)."""
    return REDELIVERY.delay(delivery - 1)


async def until_written(write: Callable[[], Awaitable[T]]) -> T:
    """Retry a JetStream write after an accept; past `WRITE_RETRY_S`, raise: the handling
    is tried again and resumes from the claim."""
    give_up = time.monotonic() + WRITE_RETRY_S
    for attempt in itertools.count():
        try:
            return await write()
        except Exception as error:
            backoff = WRITE_BACKOFF.delay(attempt)
            if time.monotonic() + backoff > give_up:
                raise
            log.warning("write after accept failed (%s), retrying", type(error).__name__)
            await asyncio.sleep(backoff)
    raise AssertionError("unreachable")  # itertools.count() never ends
