"""`switchboard postcall`: config → NATS → endpoints → fan-out, deliveries, index → health.

What happens after a call (and during it, for endpoints that want live events) runs here,
apart from the call path: the ingress, the acceptor and the session workers never wait
for a subscriber. One process or several: the fan-out and each endpoint's outbox are
durable JetStream consumers, so replicas share the work and a restart resumes it.

SIGTERM: readiness 503, fetching stops, attempts in flight finish (each bounded by the
request timeout); anything not acknowledged is delivered again later, with the same id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from nats.aio.client import Client

from services.postcall.delivery import EndpointDelivery, RetryPolicy, backlog
from services.postcall.endpoints_file import WebhooksFile
from services.postcall.fanout import Fanout
from services.postcall.sender import Sender
from services.postcall.view import EndpointView
from shared import metrics
from shared.endpoints import EndpointStore
from shared.nats import connect
from shared.ops import HttpServer, ops_app
from shared.postcall import declare_postcall_topology, drop_endpoint_queue
from shared.service import run
from shared.settings import Settings
from shared.streams import declare_configured_topology
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BACKLOG_EVERY = 5  # reconcile rounds between backlog gauge updates
NATS_FLUSH_TIMEOUT_S = 5


class PostCall:
    name = "postcall"

    def __init__(self, settings: Settings, metrics_port: int, host: str = "0.0.0.0") -> None:
        self.settings = settings
        self.policy = RetryPolicy(
            schedule=settings.webhooks_retry_schedule,
            max_age_s=settings.switchboard_webhooks_max_age_s,
            timeout_s=settings.switchboard_webhooks_timeout_s,
        )
        self.http = HttpServer(ops_app(self.is_ready), host, metrics_port)
        self.deliveries: dict[str, EndpointDelivery] = {}
        self._nc: Client | None = None
        self._view: EndpointView | None = None
        self._file: WebhooksFile | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False
        self._started = asyncio.Event()

    def is_ready(self) -> bool:
        ready = (
            not self._draining
            and self._started.is_set()
            and self._nc is not None
            and self._nc.is_connected
        )
        metrics.READY.set(ready)
        return ready

    async def start(self) -> None:
        await self.http.start()
        settings = self.settings
        self._nc = await connect(settings.nats_servers, name="switchboard-postcall")
        js = self._nc.jetstream()
        await declare_configured_topology(js, settings)
        await declare_postcall_topology(
            js,
            replicas=settings.nats_replicas,
            retention_s=settings.switchboard_events_retention_s,
            max_age_s=settings.switchboard_webhooks_max_age_s,
        )
        store = await EndpointStore.open(js)
        self._view = EndpointView(store)
        if settings.switchboard_webhooks_file is not None:
            self._file = WebhooksFile(
                settings.switchboard_webhooks_file, store, js,
                settings.switchboard_webhooks_allow_private,
            )  # fmt: skip
            await self._file.sync_if_changed(force=True)
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(Fanout(js, self._view).run(), name="fanout"),
            asyncio.create_task(self._watch(), name="reconcile"),
        ]
        self._started.set()

    async def reconcile(self) -> None:
        """Run a delivery for every enabled endpoint, and only for those."""
        assert self._view is not None and self._nc is not None
        if self._file is not None:
            await self._file.sync_if_changed()
        await self._view.refresh()
        wanted = {i: e for i, e in self._view.endpoints.items() if e.disabled is None}
        for endpoint_id in list(self.deliveries):
            delivery = self.deliveries[endpoint_id]
            if endpoint_id not in wanted or delivery.endpoint.disabled is not None:
                await delivery.stop()  # still listed meanwhile: stop() reaches it if we are cut
                del self.deliveries[endpoint_id]
                if endpoint_id not in self._view.endpoints:  # deleted: its queue and gauges go
                    # Events the fan-out queued before it saw the deletion, if any.
                    await drop_endpoint_queue(self._nc.jetstream(), endpoint_id)
                    for gauge in (metrics.WEBHOOK_BACKLOG, metrics.WEBHOOK_BACKLOG_AGE):
                        with contextlib.suppress(KeyError):
                            gauge.remove(endpoint_id)
        for endpoint_id, endpoint in wanted.items():
            running = self.deliveries.get(endpoint_id)
            if running is not None:
                running.endpoint = endpoint  # a rotated secret applies from the next attempt
                continue
            # A connection pool per endpoint: a slow receiver cannot use up another's.
            sender = Sender(
                timeout_s=self.settings.switchboard_webhooks_timeout_s,
                allow_private=self.settings.switchboard_webhooks_allow_private,
                max_connections=self.settings.switchboard_webhooks_concurrency,
            )
            delivery = EndpointDelivery(
                self._nc.jetstream(), endpoint, sender, self.policy, self._view.store,
                concurrency=self.settings.switchboard_webhooks_concurrency,
                replicas=self.settings.nats_replicas,
            )  # fmt: skip
            delivery.start()
            self.deliveries[endpoint_id] = delivery
            log.info("delivering to endpoint %s", endpoint_id)

    async def _watch(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.settings.switchboard_webhooks_poll_s)
            try:
                await self.reconcile()
                rounds += 1
                if rounds % BACKLOG_EVERY == 0:
                    await self._measure_backlog()
            except Exception as error:  # NATS away for a moment: the next round retries
                log.warning("endpoint reconcile failed (%s)", type(error).__name__)

    async def _measure_backlog(self) -> None:
        assert self._nc is not None
        for endpoint_id in list(self.deliveries):
            waiting, age = await backlog(self._nc.jetstream(), endpoint_id)
            metrics.WEBHOOK_BACKLOG.labels(endpoint_id).set(waiting)
            metrics.WEBHOOK_BACKLOG_AGE.labels(endpoint_id).set(age)

    async def stop(self) -> None:
        self._draining = True
        metrics.DRAINING.set(1)
        metrics.READY.set(0)
        await cancel_and_wait(*self._tasks)
        await asyncio.gather(*(d.stop() for d in self.deliveries.values()))
        self.deliveries.clear()
        if self._nc is not None:
            # Not drain(): our subscriptions are gone already, and nats-py's drain swallows
            # the cancellation of a timeout. What matters is that the last acks go out.
            if self._nc.is_connected:
                with contextlib.suppress(Exception):
                    await self._nc.flush(timeout=NATS_FLUSH_TIMEOUT_S)
            await self._nc.close()
        await self.http.stop()


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    return run(PostCall(settings, args.metrics_port), settings)
