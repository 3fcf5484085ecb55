"""The life of a service process: start, wait for SIGTERM/SIGINT, drain, stop.

A first signal asks the service to drain (readiness 503, finish what is in flight); a
second one, or the drain deadline, ends it at once. A signal during start-up (NATS not
reachable yet, say) has nothing to drain: start-up is cancelled and the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Protocol

from shared.logging import configure_logging
from shared.settings import Settings

log = logging.getLogger(__name__)

# How long a service stopped during start-up may take to close what it opened.
STOP_DURING_START_S = 1.0
# Collect the young generation every 100,000 net allocations instead of 700.
YOUNG_GC_THRESHOLD = 100_000


def settle_heap() -> None:
    """Keep what is loaded so far out of the cyclic GC, and run its young generation less
    often. Everything loaded at start-up (the openai SDK's types, FastStream, pydantic
    models, the agents: 100k-150k objects) lives as long as the process, and full passes
    over it took ~100 ms each, the services' longest pauses; a call's or a webhook's own
    objects are freed by reference counting, so young collections seldom find anything."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, 50, 100)


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Drain and stop; returns when the service is done."""


async def serve_until_signalled(service: Service) -> None:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            if starting.done():
                log.info("%s: draining (signal again to stop at once)", service.name)
            stop_requested.set()
        else:
            log.warning("%s: second signal, stopping now", service.name)
            for task in asyncio.all_tasks(loop):
                task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    starting = asyncio.create_task(service.start())
    signalled = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("%s: signalled during start-up; stopping", service.name)
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(STOP_DURING_START_S):
                await service.stop()  # closes whatever start() had opened
        return
    signalled.cancel()
    starting.result()  # a failed start-up ends the process with its error
    log.info("%s: started", service.name)
    await stop_requested.wait()
    await service.stop()
    log.info("%s: stopped", service.name)


def run(service: Service, settings: Settings) -> int:
    configure_logging(settings.log_format, settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
        pass
    try:
        asyncio.run(serve_until_signalled(service))
    except asyncio.CancelledError:
        return 1
    return 0
