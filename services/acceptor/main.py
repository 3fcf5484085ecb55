"""`switchboard acceptor`: config → agents file → broker → the incoming-call handler →
health server. A bad agents file stops it at start-up with the line and the reason."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket

from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.nats import JStream, PullSub
from faststream.nats.message import NatsMessage
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.aio.client import Client
from nats.aio.msg import Msg
from openai import AsyncOpenAI
from prometheus_client import REGISTRY

from services.acceptor.acceptor import CallAcceptor
from services.acceptor.claims import DecidedElsewhere
from services.acceptor.config import AcceptorSettings
from services.acceptor.hook import AgentResolver
from services.acceptor.probe import SidebandProbe
from services.acceptor.retries import redelivery_delay
from services.acceptor.sip_calls import SipCalls
from shared import metrics
from shared.admission import admissions_bucket
from shared.agent_directory import AgentDirectory
from shared.agents import default_agent
from shared.agents_file import AgentsFileError
from shared.agents_reloader import AgentsReloader
from shared.backlog import watch_backlog
from shared.broker import ReconnectingBroker
from shared.calls import IncomingCall
from shared.events import CallEventPublisher
from shared.nats import CLIENT_OPTIONS, on_error, public_url, wait_for_nats
from shared.openai_client import call_control_client
from shared.ops import HttpServer, ops_app
from shared.reservations import Admission
from shared.service import run, settle_heap
from shared.settings import ConfigError, Settings, load_settings, require
from shared.streams import (
    ACCEPTOR_ACK_WAIT_S,
    ACCEPTOR_CONSUMER,
    ACCEPTOR_LIVE_CONSUMER,
    ACCEPTOR_MAX_DELIVER,
    CALL_CLAIMS_BUCKET,
    INCOMING_CALL_SUBJECT,
    LIVE_INCOMING_CALL_SUBJECT,
    SIP_CALLS_BUCKET,
    WEBHOOKS_STREAM,
    WORKER_SLOTS_BUCKET,
    declare_configured_topology,
)

log = logging.getLogger(__name__)

# Realtime and GPT-Live calls arrive on subjects of their own, each read by its own durable
# consumer (one API's backlog never holds up the other's), and are handled alike.
_INCOMING_CALLS = (
    (
        INCOMING_CALL_SUBJECT,
        ACCEPTOR_CONSUMER,
        "incoming-calls",
        "Verified realtime.call.incoming webhooks, one per webhook-id",
    ),
    (
        LIVE_INCOMING_CALL_SUBJECT,
        ACCEPTOR_LIVE_CONSUMER,
        "incoming-live-calls",
        "Verified live.transport.incoming (and live.call.incoming) webhooks",
    ),
)


class Acceptor:
    name = "acceptor"

    def __init__(
        self,
        settings: Settings,
        metrics_port: int,
        host: str = "0.0.0.0",
        options: AcceptorSettings | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or AcceptorSettings()
        default = default_agent(settings)
        self.reloader: AgentsReloader | None = None
        directory = AgentDirectory.build(default, [])
        if settings.switchboard_agents_file is not None:
            self.reloader = AgentsReloader(
                settings.switchboard_agents_file,
                default,
                apply=self._use_agents,
                poll_s=self.options.switchboard_agents_poll_s,
            )
            directory = self.reloader.load_initial()  # raises AgentsFileError
        self.resolver = AgentResolver(
            directory, hook_timeout_s=self.options.switchboard_agent_hook_timeout_ms / 1000
        )
        self.admission: Admission | None = None
        self._openai: AsyncOpenAI | None = None
        self.broker = ReconnectingBroker(  # reconnects after a server -ERR too
            settings.nats_servers,
            reconnected_cb=self._reconnected,
            error_cb=on_error,
            **CLIENT_OPTIONS,  # deliberate pings, pending limits (shared/nats.py)
            middlewares=[NatsPrometheusMiddleware(registry=REGISTRY, app_name="acceptor")],
            logger=None,
        )
        self._acceptor: CallAcceptor | None = None
        self._nc: Client | None = None  # the broker's connection, once connected
        self._draining = False
        self._deciding: set[str] = set()  # webhook ids this process is handling now
        # Named in the claims it writes; unique per process, also two in one (tests).
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # Several webhooks are decided at once, so one slow accept does not hold up the next.
        # They are pulled as many at a time: pulled one at a time (a round trip fewer per
        # webhook at low rates, -5 % of the acceptor's CPU at 50 calls/s), a backlog came in
        # too slowly on a loaded machine, and webhooks that could have been accepted were
        # shed or missed (the shedding test, once in CI).
        concurrent = self.options.switchboard_concurrent_accepts
        for subject, durable, title, description in _INCOMING_CALLS:
            self.broker.subscriber(
                subject,
                stream=JStream(WEBHOOKS_STREAM, declare=False),
                durable=durable,
                pull_sub=PullSub(batch_size=concurrent, timeout=1.0),
                max_workers=concurrent,
                ack_policy=AckPolicy.NACK_ON_ERROR,
                title=title,
                description=description,
            )(self.on_incoming_call)
        self.http = HttpServer(ops_app(self.is_ready), host, metrics_port)

    async def on_incoming_call(self, call: IncomingCall) -> None:
        assert self._acceptor is not None
        # The delivery is read from FastStream's context, not asked for as a `NatsMessage`
        # parameter: fast_depends resolves that annotation with a sync function, which it
        # runs in a worker thread for every message (profiled: a thread hop per call).
        message: NatsMessage = self.broker.context.get_local("message")
        delivery = message.raw_message.metadata.num_delivered
        if call.webhook_id in self._deciding:
            # Redelivered while this process still decides it (its in-progress beats were
            # lost, in a leader election say): a second handling, finding the claim
            # `accepting` before the first one's accept went out, would accept the call
            # twice. It comes back later, and is a duplicate once the first one is done.
            raise NackMessage(delay=redelivery_delay(delivery))
        self._deciding.add(call.webhook_id)
        keep_alive = asyncio.create_task(_in_progress_while_handled(message.raw_message))
        try:
            await self._decide(call, delivery)
        finally:
            self._deciding.discard(call.webhook_id)
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive

    async def _decide(self, call: IncomingCall, delivery: int) -> None:
        """Decide the call, trying a failed handling again here: only this process knows
        that handling is over, so only here does its claim resume at once (another replica
        leaves it alone until the call's deadline: `DecidedElsewhere`)."""
        assert self._acceptor is not None
        for attempt in itertools.count(delivery):
            try:
                await self._acceptor.handle(call)
                return
            except DecidedElsewhere as elsewhere:
                metrics.ACCEPT_RETRIES.labels("elsewhere").inc()
                raise NackMessage(delay=elsewhere.retry_in_s) from None
            except Exception as error:
                metrics.ACCEPT_RETRIES.labels("here").inc()
                if self._draining or attempt >= ACCEPTOR_MAX_DELIVER:
                    raise NackMessage(delay=redelivery_delay(attempt)) from error
                await asyncio.sleep(redelivery_delay(attempt))  # back-off, not synchronisation

    async def _reconnected(self) -> None:
        log.info("nats reconnected")
        if self.admission is not None:
            await self.admission.resync()  # its watches may have missed reports meanwhile

    def is_ready(self) -> bool:
        ready = not self._draining and self._nc is not None and self._nc.is_connected
        metrics.READY.set(ready)
        return ready

    def _use_agents(self, directory: AgentDirectory) -> None:
        """A reloaded agents file: used from the next call on, and said in the log."""
        self.resolver.swap(directory)
        log.info("%s", self.describe())

    def describe(self) -> str:
        """Which agents answer which numbers: the first thing to check when a call is not
        answered by the agent it should be."""
        directory = self.resolver.directory
        default = directory.default
        agents = [
            f"{p.name} ({', '.join(p.numbers) or 'no numbers'})"
            for name, p in directory.by_name.items()
            if name != default.name
        ]
        source = self.settings.switchboard_agents_file or "no agents file"
        return (
            f"acceptor: agents from {source}: {'; '.join(agents) or 'none'}; default agent "
            f"{default.model}/{default.voice}; NATS {public_url(self.settings.nats_url)}"
        )

    async def start(self) -> None:
        log.info("%s", self.describe())
        await self.http.start()
        await wait_for_nats(self.settings.nats_servers)  # says which URL it cannot reach
        nc = self._nc = await self.broker.connect()
        js = nc.jetstream()
        await declare_configured_topology(js, self.settings)
        self.admission = Admission(
            await admissions_bucket(js, replicas=self.settings.nats_replicas),
            await js.key_value(WORKER_SLOTS_BUCKET),
        )
        await self.admission.start()
        self.resolver.use_hook(nc)
        self._openai = call_control_client(self.settings)
        self._acceptor = CallAcceptor(
            js=js,
            claims=await js.key_value(CALL_CLAIMS_BUCKET),
            events=CallEventPublisher(js),
            openai_client=self._openai,
            resolve_agent=self.resolver,
            admission=self.admission,
            deadline_s=self.settings.accept_deadline_s,
            reject_status=self.options.switchboard_reject_sip_status,
            shed_after_s=self.options.shed_after_s(self.settings.accept_deadline_s),
            request_timeout_s=self.settings.openai_timeout_s,
            probe=SidebandProbe(self.settings),
            sip_calls=SipCalls(await js.key_value(SIP_CALLS_BUCKET)),
            owner=self.owner,
        )
        if self.reloader is not None:
            self.reloader.start()
        await self.broker.start()
        watch_backlog(nc)  # NATS backlog gauges, until the broker closes nc

    async def stop(self) -> None:
        self._draining = True
        metrics.DRAINING.set(1)
        await self.broker.stop()  # stops fetching, lets running accepts finish
        if self.reloader is not None:
            await self.reloader.stop()
        if self.admission is not None:
            await self.admission.stop()
        if self._openai is not None:
            await self._openai.close()
        await self.http.stop()


async def _in_progress_while_handled(message: Msg) -> None:
    """Keep a webhook's delivery ours while its call is decided (an accept with retries, or
    the writes after it, can outlast the ack wait): redelivered meanwhile, it would find the
    claim still `accepting` and send a second accept."""
    while True:
        await asyncio.sleep(ACCEPTOR_ACK_WAIT_S / 3)
        with contextlib.suppress(Exception):  # the next beat, or the ack, may still land
            await message.in_progress()


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    require(settings, "openai_api_key")
    options = load_settings(AcceptorSettings)
    try:
        acceptor = Acceptor(settings, args.metrics_port, args.host, options)
    except AgentsFileError as error:
        raise ConfigError("; ".join(str(error).splitlines())) from None
    settle_heap()  # the openai SDK's types, FastStream, the agents: ~140k objects
    return run(acceptor, settings)
