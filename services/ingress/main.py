"""`switchboard ingress`: config → NATS → webhook endpoint → HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import logging

from nats.aio.client import Client
from nats.js import JetStreamContext

from services.ingress.app import WebhookEndpoint, build_app
from services.ingress.webhook import WebhookVerifier
from shared import metrics
from shared.events import CallEventPublisher
from shared.nats import connect
from shared.ops import HttpServer, ops_routes
from shared.service import run
from shared.settings import Settings
from shared.streams import declare_topology

log = logging.getLogger(__name__)


class Ingress:
    name = "ingress"

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._events: CallEventPublisher | None = None
        self._draining = False
        self._connecting: asyncio.Task[None] | None = None
        endpoint = WebhookEndpoint(
            WebhookVerifier(settings.webhook_secrets),
            js=lambda: self._js,
            events=lambda: self._events,
            max_bytes=settings.webhook_max_bytes,
        )
        self.http = HttpServer(build_app(endpoint, ops_routes(self.is_ready)), host, port)

    def is_ready(self) -> bool:
        ready = not self._draining and self._nc is not None and self._nc.is_connected
        metrics.READY.set(ready)
        return ready

    async def start(self) -> None:
        # Serve at once (health, and 503 on webhooks) even while NATS is not reachable yet.
        await self.http.start()
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        while True:
            try:
                nc = await connect(self.settings.nats_servers, name="switchboard-ingress")
                break
            except Exception as error:
                log.warning("nats not reachable yet (%s); retrying", type(error).__name__)
                await asyncio.sleep(1.0)
        js = nc.jetstream()
        await declare_topology(
            js,
            replicas=self.settings.nats_replicas,
            session_ack_wait_s=self.settings.session_ack_wait_s,
        )
        self._nc, self._js, self._events = nc, js, CallEventPublisher(js)
        log.info("ingress connected to nats")

    async def wait_connected(self) -> None:
        assert self._connecting is not None
        await self._connecting

    async def stop(self) -> None:
        self._draining = True
        metrics.DRAINING.set(1)
        await self.http.stop()  # finishes the requests in flight
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._nc is not None:
            await self._nc.drain()


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    return run(Ingress(settings, args.host, args.port), settings)
