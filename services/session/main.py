"""`switchboard session`: config → NATS → the job loop → health server."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from services.session.worker import SessionWorker
from shared import metrics
from shared.nats import public_url
from shared.ops import HttpServer, ops_app
from shared.service import run, settle_heap
from shared.settings import Settings, load_settings, require

log = logging.getLogger(__name__)


class SessionService:
    name = "session"

    def __init__(
        self, settings: Settings, capacity: int, worker_id: str, metrics_port: int,
        host: str = "0.0.0.0",
    ) -> None:  # fmt: skip
        self.worker = SessionWorker(settings, capacity, worker_id)
        self.http = HttpServer(ops_app(self.is_ready, self.is_alive), host, metrics_port)
        self._where = f"{host}:{metrics_port}"

    def is_ready(self) -> bool:
        ready = not self.worker.draining and self.worker.is_connected()
        metrics.READY.set(ready)
        return ready

    def is_alive(self) -> bool:
        """Liveness: false once NATS has been out of reach for longer than a lease (the
        worker's calls are no longer its own) or the client is closed for good."""
        return self.worker.is_alive()

    def describe(self) -> str:
        worker = self.worker
        return (
            f"session worker {worker.worker_id}: capacity {worker.capacity}, health on "
            f"{self._where}, NATS {public_url(worker.settings.nats_url)}"
        )

    async def start(self) -> None:
        log.info("%s", self.describe())
        await self.http.start()
        await self.worker.start()
        # After start: a worker also holds thousands of long-lived objects per call, and
        # the cyclic GC's passes over them were the event loop's longest pauses.
        settle_heap()

    async def stop(self) -> None:
        await self.worker.stop()
        await self.http.stop()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}".replace(".", "-")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    require(settings, "openai_api_key")
    worker_id = args.worker_id or default_worker_id()
    service = SessionService(settings, args.capacity, worker_id, args.metrics_port, args.host)
    return run(service, settings)
