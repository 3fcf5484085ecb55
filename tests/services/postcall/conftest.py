"""Fixtures for post-call webhooks: a real receiver on loopback, the post-call service and
the ingress in-process on a real nats-server, and calls written as events.

Receivers check signatures with the openai SDK's Standard Webhooks verifier and with a
hand-written HMAC (tests/services/ingress/conftest.py `sign`), never with the library
that signs them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.ingress.main import Ingress
from services.postcall.main import PostCall
from shared.events import CallEventPublisher, EventType
from shared.ops import HttpServer
from shared.settings import Settings
from switchboard.nats_server import NatsServer
from tests.services.ingress.conftest import sign

TOKEN = "control-" + "t" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SALON = "+61468002102"


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int  # what the receiver answered


Behaviour = Callable[["Receiver", str], tuple[int, dict[str, str]]]


def always_ok(receiver: Receiver, webhook_id: str) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    """A webhook receiver on loopback that records every request and answers as told."""

    behaviour: Behaviour = always_ok
    deliveries: list[Delivery] = field(default_factory=list)
    gate: asyncio.Event | None = None  # set: requests wait for it before being answered
    arrived: int = 0  # requests received, answered or not

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self.http = HttpServer(
            Starlette(routes=[Route("/hook", self._receive, methods=["POST"])]), "127.0.0.1", 0
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/hook"

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        webhook_id = request.headers.get("webhook-id", "")
        async with self._changed:
            self.arrived += 1
            self._changed.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        status, headers = self.behaviour(self, webhook_id)
        async with self._changed:
            self.deliveries.append(
                Delivery(webhook_id, dict(request.headers), body, time.monotonic(), status)
            )
            self._changed.notify_all()
        return Response(b'{"ok":true}', status_code=status, headers=headers)

    def tries(self, webhook_id: str) -> int:
        return sum(1 for d in self.deliveries if d.webhook_id == webhook_id)

    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if 200 <= d.status < 300]

    def accepted_ids(self) -> Counter[str]:
        return Counter(d.webhook_id for d in self.accepted())

    async def wait(self, predicate: Callable[[Receiver], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))


def verify(delivery: Delivery, secret: str) -> dict[str, Any]:
    """Verified two independent ways (the openai SDK, and HMAC by hand); the event."""
    AsyncOpenAI(api_key="unused").webhooks.verify_signature(
        delivery.body, delivery.headers, secret=secret
    )
    expected = sign(
        secret, delivery.webhook_id, delivery.headers["webhook-timestamp"], delivery.body
    )
    assert expected in delivery.headers["webhook-signature"].split(" ")
    import json

    return json.loads(delivery.body)


def postcall_settings(nats_url: str, **overrides: Any) -> Settings:
    values = {
        "nats_url": nats_url,
        "openai_webhook_secret": "whsec_" + "A" * 43 + "=",
        "switchboard_control_token": TOKEN,
        "switchboard_webhooks_allow_private": True,
        "switchboard_webhooks_retry_schedule": "0.2,0.4",
        "switchboard_webhooks_timeout_s": 2.0,
        "switchboard_webhooks_poll_s": 0.1,
        "log_format": "text",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.http.start()
    yield running
    await running.http.stop()


@pytest.fixture
def settings(nats_server: NatsServer) -> Settings:
    return postcall_settings(nats_server.url)


@pytest.fixture
async def ingress(settings: Settings) -> AsyncIterator[Ingress]:
    running = Ingress(settings, "127.0.0.1", 0)
    await running.start()
    await running.wait_connected()
    yield running
    await running.stop()


@pytest.fixture
async def postcall(settings: Settings, ingress: Ingress) -> AsyncIterator[PostCall]:
    running = PostCall(settings, metrics_port=0, host="127.0.0.1")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def api(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{ingress.http.port}"
    # Idle connections dropped here before uvicorn's 5 s keep-alive closes them there (a
    # request on a connection the server is closing fails with a reset).
    keepalive = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=base, headers=AUTH, timeout=15.0, limits=keepalive
    ) as client:
        yield client


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2)  # fmt: skip
    yield client
    await client.close()


async def subscribe(api: httpx.AsyncClient, url: str, **body: Any) -> tuple[str, str]:
    """A new endpoint: (id, secret)."""
    answer = await api.post("/webhooks", json={"url": url, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["secret"]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Until `check()` holds: for state only visible by asking (JetStream, HTTP)."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def wait_delivering(
    postcall: PostCall, endpoint_id: str, present: bool = True, timeout: float = 30.0
) -> None:
    """Until the service runs (or stopped) a delivery for the endpoint (it polls KV)."""

    async def check() -> bool:
        return (endpoint_id in postcall.deliveries) == present

    await eventually(check, timeout)


async def fanned_out(nc: Client, timeout: float = 30.0) -> None:
    """Until the fan-out has handled and acknowledged every stored event."""
    js = nc.jetstream()

    async def check() -> bool:
        info = await js.consumer_info("CALL_EVENTS", "postcall")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(check, timeout)


async def outbox_drained(nc: Client, endpoint_id: str, timeout: float = 30.0) -> None:
    """Until nothing waits in the endpoint's outbox and nothing is unacknowledged (polled:
    JetStream announces neither)."""
    js = nc.jetstream()

    async def check() -> bool:
        info = await js.consumer_info("POSTCALL_OUTBOX", f"endpoint-{endpoint_id}")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(check, timeout)


def new_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


async def finished_call(
    events: CallEventPublisher,
    *,
    agent: str = "salon",
    to: str = SALON,
    caller: str = "+14155550123",
    end_reason: str = "caller_hangup",
    call_id: str | None = None,
) -> str:
    """A whole call as the services would write it: received → … → report."""
    call_id = call_id or new_call_id()
    sip = [
        {"name": "From", "value": f"sip:{caller}@sip.example.com"},
        {"name": "To", "value": f"sip:{to}@sip.example.com"},
    ]
    await events.publish(call_id, EventType.CALL_RECEIVED, {"sip_headers": sip})
    await events.publish(call_id, EventType.CALL_ACCEPTED, {"agent": agent})
    await events.publish(call_id, EventType.TRANSCRIPT_CALLER, {"text": "hello"})
    await events.publish(call_id, EventType.CALL_ENDED, {"reason": end_reason})
    await events.publish(
        call_id,
        EventType.CALL_REPORT,
        {"duration_s": 1.5, "turns": 1, "transcript": [], "tools": [],
         "end_reason": end_reason, "attempts": 1},
    )  # fmt: skip
    events.forget(call_id)
    return call_id
