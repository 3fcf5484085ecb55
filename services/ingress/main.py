"""`switchboard ingress`: config → NATS → webhook endpoint → HTTP server.

The HTTP server starts before NATS is reachable: `/healthz` answers at once, `/readyz` and
webhooks answer 503 until the connection and the topology are in place. After that the
NATS client reconnects by itself; readiness follows the connection, and webhooks answer
503 while it is down. SIGTERM: readiness 503, the listener closes, requests in flight
finish (publishes included), then the NATS connection drains.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging

from nats.aio.client import Client

from services.ingress.agents import IngressAgents
from services.ingress.app import PUBLISH_TIMEOUT_S, WebhookEndpoint, build_app
from services.ingress.console.routes import Console
from services.ingress.control import control_routes
from services.ingress.history import history_routes
from services.ingress.outbound import outbound_routes
from services.ingress.publish import CallPublisher
from services.ingress.webhook import WebhookVerifier
from services.ingress.webhooks_api import webhooks_routes
from shared import metrics
from shared.backoff import Backoff
from shared.nats import ConnectionWatch, connect, public_url
from shared.ops import HttpServer, ops_routes
from shared.outbound_store import declare_outbound
from shared.postcall import declare_postcall_topology
from shared.service import run, settle_heap
from shared.settings import Settings, load_settings, require
from shared.streams import declare_configured_topology

log = logging.getLogger(__name__)

CONNECT_RETRY = Backoff(first_s=0.1, max_s=1.0)
NATS_DRAIN_TIMEOUT_S = 5.0


class Ingress:
    name = "ingress"

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._watch = ConnectionWatch()
        self._publisher: CallPublisher | None = None
        self._draining = False
        self._connecting: asyncio.Task[None] | None = None
        endpoint = WebhookEndpoint(
            WebhookVerifier(settings.webhook_secrets),
            publisher=self._connected_publisher,
            max_bytes=settings.webhook_max_bytes,
        )
        token, nc = settings.switchboard_control_token, lambda: self._nc
        control = control_routes(token, nc)
        after_the_call = [  # before the control routes: `GET /calls` also serves history
            *history_routes(token, nc, control),
            *webhooks_routes(token, nc, allow_private=settings.switchboard_webhooks_allow_private),
        ]
        self.console = Console.from_settings(settings, nc)
        console = self.console.routes() if self.console else []
        self.agents = IngressAgents(settings)
        outbound = outbound_routes(
            token.get_secret_value() if token else None, nc, self.agents.named
        )
        routes = [
            *ops_routes(self.is_ready, self.is_alive),
            *after_the_call,
            *control,
            *console,
            *outbound,
        ]
        self.app = build_app(endpoint, routes)
        self.http = HttpServer(self.app, host, port)
        self._where = f"{host}:{port}"

    def _connected_publisher(self) -> CallPublisher | None:
        if self._nc is None or not self._nc.is_connected:
            return None
        return self._publisher

    def is_ready(self) -> bool:
        ready = not self._draining and self._connected_publisher() is not None
        metrics.READY.set(ready)
        return ready

    def is_alive(self) -> bool:
        """Liveness: the ingress rides out any NATS outage (503s meanwhile, reconnecting),
        so only a client closed for good, which will not come back, makes it not alive."""
        return not self._watch.closed

    def describe(self) -> str:
        """What this ingress runs with (no secret, only how many)."""
        control = "on" if self.settings.switchboard_control_token else "off"
        return (
            f"ingress on {self._where}: {len(self.settings.webhook_secrets)} webhook "
            f"secret(s), control API {control}, NATS {public_url(self.settings.nats_url)}"
        )

    async def start(self) -> None:
        log.info("%s", self.describe())
        # Serve at once (health, and 503 on webhooks) even while NATS is not reachable yet.
        await self.http.start()
        self.agents.start()
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        for attempt in itertools.count():
            nc: Client | None = None
            watch = ConnectionWatch()  # a failed attempt's closed client is not ours to watch
            try:
                nc = await connect(self.settings.nats_servers, "switchboard-ingress", watch)
                js = nc.jetstream()
                await declare_configured_topology(js, self.settings)
                await declare_postcall_topology(
                    js,
                    replicas=self.settings.nats_replicas,
                    retention_s=self.settings.switchboard_events_retention_s,
                    max_age_s=self.settings.switchboard_webhooks_max_age_s,
                )
                await declare_outbound(js, replicas=self.settings.nats_replicas)
                break
            except Exception as error:
                log.warning("nats not ready yet (%s); retrying", type(error).__name__)
                if nc is not None:
                    await nc.close()
                await asyncio.sleep(CONNECT_RETRY.delay(attempt))
        self._publisher = CallPublisher(js, timeout_s=PUBLISH_TIMEOUT_S)
        self._watch = watch
        self._nc = nc
        log.info("ingress connected to nats")

    async def wait_connected(self) -> None:
        assert self._connecting is not None
        await self._connecting

    async def stop(self) -> None:
        self._draining = True
        metrics.DRAINING.set(1)
        metrics.READY.set(0)
        if self.console is not None:
            await self.console.close()  # its streams would hold the server open
        await self.http.stop()  # closes the listener, finishes the requests in flight
        await self.agents.stop()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._nc is not None:
            if self._nc.is_connected:
                try:
                    async with asyncio.timeout(NATS_DRAIN_TIMEOUT_S):
                        await self._nc.drain()
                except TimeoutError:
                    log.warning("nats drain timed out")
            await self._nc.close()


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    require(settings, "openai_webhook_secret")
    ingress = Ingress(settings, args.host, args.port)
    settle_heap()
    return run(ingress, settings)
