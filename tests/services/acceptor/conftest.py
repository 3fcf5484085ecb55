"""The acceptor alone on a real nats-server, against the simulator.

Webhooks are published to the WEBHOOKS stream the way the ingress does (an
`IncomingCall`, `Nats-Msg-Id` = webhook id), so a test controls the `To` header and the
arrival time exactly; session workers are represented by what they write to KV bucket
`worker_slots` (the contract admission reads), so a test controls the free slots exactly.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import Header

from services.acceptor.config import AcceptorSettings
from services.acceptor.main import Acceptor
from shared.calls import IncomingCall, SessionJob, SipHeader
from shared.settings import Settings
from shared.streams import (
    INCOMING_CALL_SUBJECT,
    SESSION_JOB_SUBJECT,
    WEBHOOKS_STREAM,
    WORKER_SLOTS_BUCKET,
)
from simulator import CallerScript, Faults, SimulatedCall, Simulator
from switchboard.nats_server import NatsServer
from tests.stack import API_KEY, EventLog, new_webhook_secret

DECISIONS = ("call.accepted", "call.rejected", "call.missed", "call.failed")
AGENTS = """agents:
  - name: salon
    numbers: ["+61468002102"]
    voice: marin
    instructions: "You are the booking assistant of Bella Salon."
    greeting: "Bella Salon, hello!"
    limits: {max_concurrent_calls: 1}
  - name: support
    numbers: ["+18005551212"]
    voice: cedar
    instructions: "You are Example support."
    greeting: "Example support."
"""


@dataclass
class Rig:
    nats_url: str
    agents_file: Path
    faults: Faults = field(default_factory=Faults)
    settings_overrides: dict = field(default_factory=dict)
    options: AcceptorSettings = field(
        default_factory=lambda: AcceptorSettings(
            _env_file=None,
            switchboard_agents_poll_s=0.05,  # type: ignore[call-arg]
        )
    )

    def __post_init__(self) -> None:
        self.events = EventLog()
        self.simulator = Simulator(
            API_KEY, new_webhook_secret(), "http://127.0.0.1:9/unused",
            faults=self.faults, webhook_max_attempts=1,
        )  # fmt: skip
        self.acceptors: list[Acceptor] = []
        self.nc: Client | None = None

    def settings(self, **overrides: object) -> Settings:
        values = {
            "nats_url": self.nats_url,
            "openai_api_key": API_KEY,
            "openai_base_url": self.simulator.base_url,
            "switchboard_agents_file": self.agents_file,
            "log_format": "text",
            **self.settings_overrides,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    @property
    def acceptor(self) -> Acceptor:
        return self.acceptors[0]

    async def start(self) -> Rig:
        await self.simulator.start()
        await self.events.start(self.nats_url)
        self.nc = await nats.connect(self.nats_url)
        await self.add_acceptor()
        return self

    async def add_acceptor(self) -> Acceptor:
        acceptor = Acceptor(self.settings(), 0, "127.0.0.1", options=self.options)
        await acceptor.start()
        self.acceptors.append(acceptor)
        return acceptor

    async def stop_acceptor(self, acceptor: Acceptor) -> None:
        await acceptor.stop()
        self.acceptors.remove(acceptor)

    async def stop(self) -> None:
        for acceptor in list(self.acceptors):
            await acceptor.stop()
        await self.simulator.stop()
        await self.events.stop()
        if self.nc is not None:
            await self.nc.close()

    async def workers(self, *free: int, draining: bool = False) -> None:
        """Session workers report these free slots; wait until the acceptors see them."""
        assert self.nc is not None
        js = self.nc.jetstream()
        for index, slots in enumerate(free):
            report = {"free": slots, "capacity": max(slots, 1), "draining": draining}
            await js.publish(
                f"$KV.{WORKER_SLOTS_BUCKET}.test-worker-{index}",
                json.dumps(report).encode(),
                msg_ttl=30,
                headers={Header.ROLLUP.value: "sub"},
            )
        total = 0 if draining else sum(free)
        for acceptor in self.acceptors:
            assert acceptor.admission is not None
            await acceptor.admission.wait_for_free(lambda n: n == total)

    async def ring(
        self,
        to: str = "+18005551212",
        *,
        to_header: str | None = None,
        received_at: datetime | None = None,
        hang_up_first: bool = False,
        script: CallerScript | None = None,
    ) -> SimulatedCall:
        """A call rings at the simulator and its webhook reaches the acceptor."""
        call = await self.simulator.place_call(script or CallerScript(), to=to)
        if hang_up_first:
            await call.hang_up()
        incoming = IncomingCall(
            webhook_id="wh_" + secrets.token_hex(8),
            call_id=call.call_id,
            received_at=received_at or datetime.now(UTC),
            sip_headers=[
                SipHeader(name="From", value="sip:+14155550123@sip.example.com"),
                SipHeader(name="To", value=to_header or f"sip:{to}@sip.example.com"),
            ],
        )
        await self.publish(incoming)
        return call

    async def publish(self, incoming: IncomingCall) -> None:
        assert self.nc is not None
        await self.nc.jetstream().publish(
            INCOMING_CALL_SUBJECT,
            incoming.model_dump_json().encode(),
            stream=WEBHOOKS_STREAM,
            headers={Header.MSG_ID.value: incoming.webhook_id},
        )

    async def outcome(self, call: SimulatedCall, timeout: float = 15.0) -> str:
        """Wait for the acceptor's decision event (accepted, rejected, missed, failed)."""

        def decided() -> list[str]:
            return [e.type for e in self.events.by_call[call.call_id] if e.type in DECISIONS]

        await self.events.wait_until(decided, timeout)
        return decided()[0]

    def decision(self, call: SimulatedCall) -> dict:
        [event] = [e for e in self.events.by_call[call.call_id] if e.type in DECISIONS]
        return event.data


class Jobs:
    """Session jobs as the acceptor publishes them (a core subscription sees each one)."""

    def __init__(self) -> None:
        self.seen: list[SessionJob] = []
        self._changed = asyncio.Condition()

    async def start(self, rig: Rig) -> Jobs:
        async def on_job(msg) -> None:
            async with self._changed:
                self.seen.append(SessionJob.model_validate_json(msg.data))
                self._changed.notify_all()

        assert rig.nc is not None
        await rig.nc.subscribe(SESSION_JOB_SUBJECT, cb=on_job)
        return self

    async def one(self) -> SessionJob:
        async with asyncio.timeout(10):
            async with self._changed:
                await self._changed.wait_for(lambda: self.seen)
        [job] = self.seen
        return job


class Acks:
    """The acceptor's acks of webhook deliveries, as they go out (a core subscription to
    the WEBHOOKS stream's ack subjects, which carry in-progress beats and naks too): a
    webhook acked is a webhook whose handling finished, every write of it made."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def start(self, rig: Rig) -> Acks:
        async def on_ack(msg: Msg) -> None:
            if msg.data not in (b"", b"+ACK"):  # an in-progress beat, a nak, a term
                return
            async with self._changed:
                self.count += 1
                self._changed.notify_all()

        assert rig.nc is not None
        await rig.nc.subscribe(f"$JS.ACK.{WEBHOOKS_STREAM}.>", cb=on_ack)
        await rig.nc.flush()
        return self

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            async with self._changed:
                await self._changed.wait_for(lambda: self.count >= count)


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(AGENTS)
    return path


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def rig(nats_server: NatsServer, agents_file: Path, faults: Faults) -> AsyncIterator[Rig]:
    running = await Rig(nats_server.url, agents_file, faults=faults).start()
    yield running
    await running.stop()
