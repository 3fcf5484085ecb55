"""`switchboard dialler`: config → agents file → NATS → the outbound work queue → tries.

Any number of replicas: each fetches tries from the `dialler` consumer of `OUTBOUND`
only while it has room for more, keeps each delivery in progress while its try runs, and
acks it when the try is decided (answered and handed to the session workers, failed,
cancelled or re-queued for a retry). A try that must wait (a full cap, no free session
slot, a retry's delay, the calling window) goes back with a delay and holds nothing.
SIGTERM: fetching stops, tries in flight finish within the drain deadline; any left are
redelivered to another replica (services/dialler/dialler.py says what happens then).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.client import JetStreamContext
from openai import AsyncOpenAI

from services.dialler.dialler import TryDialler
from shared import metrics
from shared.admission import admissions_bucket
from shared.agent_directory import AgentDirectory
from shared.agents import AgentProfile, default_agent
from shared.agents_file import AgentsFileError
from shared.agents_reloader import AgentsReloader
from shared.events import CallEventPublisher
from shared.nats import connect
from shared.openai_client import call_control_client
from shared.ops import HttpServer, ops_app
from shared.outbound import DIALLER_CONSUMER, OUTBOUND_CALLS_BUCKET, OUTBOUND_STREAM
from shared.outbound_limits import OutboundLimits, limits_bucket
from shared.outbound_store import DIALLER_ACK_WAIT_S, CallRecords, TryMessage, declare_outbound
from shared.reservations import Admission
from shared.service import run
from shared.settings import ConfigError, Settings, load_settings, require
from shared.streams import WORKER_SLOTS_BUCKET, declare_configured_topology
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CONCURRENT_TRIES = 64
DRAIN_DEADLINE_S = 30.0


class Dialler:
    name = "dialler"

    def __init__(self, settings: Settings, metrics_port: int, host: str = "0.0.0.0") -> None:
        self.settings = settings
        self.dialler_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        default = default_agent(settings)
        self.directory = AgentDirectory.build(default, [])
        self.reloader: AgentsReloader | None = None
        if settings.switchboard_agents_file is not None:
            self.reloader = AgentsReloader(
                settings.switchboard_agents_file, default, apply=self._swap
            )
            self.directory = self.reloader.load_initial()  # raises AgentsFileError
        self._warn_missing_passwords()
        self.http = HttpServer(ops_app(self.is_ready), host, metrics_port)
        self._nc: Client | None = None
        self._admission: Admission | None = None
        self._openai: AsyncOpenAI | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Semaphore(CONCURRENT_TRIES)
        self._loop: asyncio.Task[None] | None = None
        self._draining = False

    def _swap(self, directory: AgentDirectory) -> None:
        self.directory = directory
        self._warn_missing_passwords()

    def _warn_missing_passwords(self) -> None:
        for agent in self.directory.by_name.values():
            if agent.outbound is not None and not agent.outbound.trunk.password():
                log.error(
                    "agent %s: no trunk password in %s; its calls will fail",
                    agent.name,
                    agent.outbound.trunk.password_source,
                )

    def _agent(self, name: str) -> AgentProfile | None:
        return self.directory.named(name)

    def is_ready(self) -> bool:
        ready = not self._draining and self._nc is not None and self._nc.is_connected
        metrics.READY.set(ready)
        return ready

    async def start(self) -> None:
        await self.http.start()
        self._nc = nc = await connect(self.settings.nats_servers, name="switchboard-dialler")
        js = nc.jetstream()
        replicas = self.settings.nats_replicas
        await declare_configured_topology(js, self.settings)
        await declare_outbound(js, replicas=replicas)
        self._admission = Admission(
            await admissions_bucket(js, replicas=replicas), await js.key_value(WORKER_SLOTS_BUCKET)
        )
        await self._admission.start()
        self._openai = call_control_client(self.settings)
        self.tries = TryDialler(
            settings=self.settings,
            js=js,
            records=CallRecords(await js.key_value(OUTBOUND_CALLS_BUCKET)),
            limits=OutboundLimits(await limits_bucket(js, replicas=replicas)),
            admission=self._admission,
            events=CallEventPublisher(js),
            client=self._openai,
            agents=self._agent,
            dialler_id=self.dialler_id,
        )
        if self.reloader is not None:
            self.reloader.start()
        self._loop = asyncio.create_task(self._fetch_loop(js))

    async def _fetch_loop(self, js: JetStreamContext) -> None:
        sub = await js.pull_subscribe_bind(durable=DIALLER_CONSUMER, stream=OUTBOUND_STREAM)
        while not self._draining:
            await self._room.acquire()
            try:
                messages = await sub.fetch(1, timeout=1.0)
            except NatsTimeout:
                self._room.release()
                continue
            except Exception as error:
                self._room.release()
                log.warning("fetch failed: %s", type(error).__name__)
                await asyncio.sleep(0.5)  # back-off while NATS reconnects
                continue
            for message in messages:
                task = asyncio.create_task(self._run(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, message: Msg) -> None:
        keep_alive = asyncio.create_task(_in_progress(message))
        try:
            request = TryMessage.model_validate_json(message.data)
            outcome = await self.tries.handle(
                request.call_id, request.attempt, message.metadata.sequence.stream
            )
            if outcome.verdict == "later":
                await message.nak(delay=outcome.delay_s)
            else:
                await message.ack()
        except Exception as error:
            log.exception("try failed (%s); redelivered", type(error).__name__)
            with contextlib.suppress(Exception):
                await message.nak(delay=1.0)
        finally:
            keep_alive.cancel()
            self._room.release()

    async def stop(self) -> None:
        self._draining = True
        metrics.DRAINING.set(1)
        await cancel_and_wait(self._loop)  # a fetch may swallow one cancel (shared/tasks.py)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DRAIN_DEADLINE_S)
            await cancel_and_wait(*self._tasks)
        if self.reloader is not None:
            await self.reloader.stop()
        if self._admission is not None:
            await self._admission.stop()
        if self._openai is not None:
            await self._openai.close()
        if self._nc is not None:
            await self._nc.close()
        await self.http.stop()


async def _in_progress(message: Msg) -> None:
    """Keep a try's delivery ours while it runs (a ringing call outlasts the ack wait)."""
    while True:
        await asyncio.sleep(DIALLER_ACK_WAIT_S / 3)
        with contextlib.suppress(Exception):
            await message.in_progress()


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    require(settings, "openai_api_key")
    try:
        dialler = Dialler(settings, args.metrics_port, args.host)
    except AgentsFileError as error:
        raise ConfigError("; ".join(str(error).splitlines())) from None
    return run(dialler, settings)
