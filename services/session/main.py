"""`switchboard session`: config → NATS → the job loop → health server."""

from __future__ import annotations

import argparse
import gc
import os
import socket

from services.session.worker import SessionWorker
from shared import metrics
from shared.ops import HttpServer, ops_app
from shared.service import run
from shared.settings import Settings


class SessionService:
    name = "session"

    def __init__(
        self, settings: Settings, capacity: int, worker_id: str, metrics_port: int,
        host: str = "0.0.0.0",
    ) -> None:  # fmt: skip
        self.worker = SessionWorker(settings, capacity, worker_id)
        self.http = HttpServer(ops_app(self.is_ready, self.is_alive), host, metrics_port)

    def is_ready(self) -> bool:
        ready = not self.worker.draining and self.worker.is_connected()
        metrics.READY.set(ready)
        return ready

    def is_alive(self) -> bool:
        """Liveness: false once NATS has been out of reach for longer than a lease (the
        worker's calls are no longer its own) or the client is closed for good."""
        return self.worker.is_alive()

    async def start(self) -> None:
        await self.http.start()
        await self.worker.start()
        # A worker holds thousands of long-lived objects per call; the cyclic GC's passes
        # over them were the event loop's longest pauses. Keep start-up objects out of it
        # and run the young generation less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)

    async def stop(self) -> None:
        await self.worker.stop()
        await self.http.stop()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}".replace(".", "-")


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    worker_id = args.worker_id or settings.worker_id or default_worker_id()
    return run(SessionService(settings, args.capacity, worker_id, args.metrics_port), settings)
