"""The life of a service process: start, wait for SIGTERM/SIGINT, drain, stop.

A first signal asks the service to drain (readiness 503, finish what is in flight); a
second one, or the drain deadline, ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

from shared.logging import configure_logging
from shared.settings import Settings

log = logging.getLogger(__name__)


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
            log.info("%s: draining (signal again to stop at once)", service.name)
            stop_requested.set()
        else:
            log.warning("%s: second signal, stopping now", service.name)
            for task in asyncio.all_tasks(loop):
                task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await service.start()
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
