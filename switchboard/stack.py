"""The whole system in one process, on loopback: for tests and benchmarks, not production.

`Stack` runs the ingress, the acceptor and session workers against a real `nats-server`
(see `switchboard.nats_server`) and the simulator; `EventLog` watches `calls.events.>` so
a caller waits for the event it expects instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.acceptor.main import Acceptor
from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from services.session.worker import SessionWorker
from shared.events import CallEvent
from shared.settings import Settings
from simulator import Faults, Simulator

API_KEY = "sk-test-" + "k" * 24
# The name of the EventLog's NATS connection: tests that look at the services' own
# connections (on the server's monitoring port) leave it out.
EVENT_LOG_CONNECTION = "stack-event-log"


def new_webhook_secret() -> str:
    """A random secret in the Standard Webhooks form OpenAI uses (`whsec_` + base64)."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


class EventLog:
    """Every call event published while the test runs, by call."""

    def __init__(self) -> None:
        self.by_call: dict[str, list[CallEvent]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._nc: Client | None = None

    async def start(self, nats_url: str) -> None:
        self._nc = await nats.connect(nats_url, name=EVENT_LOG_CONNECTION)

        async def on_event(msg: Msg) -> None:
            event = CallEvent.model_validate_json(msg.data)
            async with self._changed:
                self.by_call[event.call_id].append(event)
                self._changed.notify_all()

        await self._nc.subscribe("calls.events.>", cb=on_event)

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    def types(self, call_id: str) -> list[str]:
        return [e.type for e in sorted(self.by_call[call_id], key=lambda e: e.seq)]

    def of_type(self, call_id: str, type: str) -> list[CallEvent]:
        return [e for e in self.by_call[call_id] if e.type == type]

    async def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Until `predicate()` holds, checked again on each event (no polling, no sleep)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for(
        self, call_id: str, type: str, timeout: float = 10.0, count: int = 1
    ) -> None:
        await self.wait_until(lambda: len(self.of_type(call_id, type)) >= count, timeout)

    async def wait_finished(self, call_ids: Iterable[str], timeout: float = 60.0) -> None:
        """Until every call has an event after which nothing more happens to it."""
        ends = {"call.report", "call.rejected", "call.missed", "call.failed"}
        wanted = list(call_ids)
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: all(ends & set(self.types(c)) for c in wanted))

    async def wait_all(self, call_ids: Iterable[str], type: str, timeout: float = 20.0) -> None:
        for call_id in call_ids:
            await self.wait_for(call_id, type, timeout)


@dataclass
class Stack:
    nats_url: str
    secret: str = field(default_factory=new_webhook_secret)
    faults: Faults = field(default_factory=Faults)
    workers: int = 1
    capacity: int = 20
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    ring_s: float = 15.0  # how long a simulated caller rings before the call is missed

    def __post_init__(self) -> None:
        self.events = EventLog()
        self.simulator: Simulator | None = None
        self.ingress: Ingress | None = None
        self.acceptor: Acceptor | None = None
        self.session_workers: list[SessionWorker] = []

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "nats_url": self.nats_url,
            "openai_api_key": API_KEY,
            "openai_webhook_secret": self.secret,
            "openai_base_url": self.simulator.base_url
            if self.simulator
            else "http://127.0.0.1:9/v1",
            "log_format": "text",
            "session_ack_wait_s": 3.0,
            "session_lease_ttl_s": 2,
            "session_drain_deadline_s": 5.0,
            **self.settings_overrides,
            **overrides,
        }
        return Settings(_env_file=None, **values)

    @property
    def webhook_url(self) -> str:
        assert self.ingress is not None
        return f"http://127.0.0.1:{self.ingress.http.port}{WEBHOOK_PATH}"

    async def start(self) -> Stack:
        await self.events.start(self.nats_url)
        self.ingress = Ingress(self.settings(), "127.0.0.1", 0)
        await self.ingress.start()
        await self.ingress.wait_connected()
        self.simulator = Simulator(
            API_KEY, self.secret, self.webhook_url, faults=self.faults,
            webhook_retry_base_s=0.2, accept_window_s=self.ring_s,
        )  # fmt: skip
        await self.simulator.start()
        self.acceptor = Acceptor(self.settings(), metrics_port=0, host="127.0.0.1")
        await self.acceptor.start()
        for _ in range(self.workers):
            await self.add_worker()
        return self

    async def add_worker(self, capacity: int | None = None) -> SessionWorker:
        worker = SessionWorker(
            self.settings(), capacity or self.capacity, f"worker-{secrets.token_hex(3)}"
        )
        await worker.start()
        self.session_workers.append(worker)
        return worker

    async def stop(self) -> None:
        for worker in self.session_workers:
            await worker.stop()
        if self.acceptor is not None:
            await self.acceptor.stop()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.ingress is not None:
            await self.ingress.stop()
        await self.events.stop()
