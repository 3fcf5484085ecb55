"""Stopping a task for sure.

On Python 3.11, `asyncio.wait_for` returns the inner result instead of raising when a
`cancel()` arrives in the same loop iteration as that result (fixed in 3.12). nats-py's
`request()` (hence every JetStream publish, KV update and lease renewal) awaits through
`wait_for`, so one `task.cancel()` aimed at a task that is waiting on a NATS reply can be
swallowed, and a `while True` loop (a heartbeat, a reporter) carries on for ever while its
owner waits for it to end. `cancel_and_wait` cancels again until the tasks have ended,
and `wait_a_while` waits on an event with a timeout without `wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long a cancelled task has to end before it is cancelled again.
RECANCEL_S = 0.1


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` and wait until every one has ended (results and errors dropped)."""
    pending = {task for task in tasks if task is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for ended in tasks:
        if ended is not None and not ended.cancelled():
            ended.exception()  # retrieved: no "exception was never retrieved" warnings


async def wait_a_while(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` passes. (Not `asyncio.wait_for`: on Python 3.11 it
    can swallow a cancellation that races with the event, and the task never ends.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
