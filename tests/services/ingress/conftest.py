"""Fixtures for the ingress: a signer of our own, an in-process ingress on a real nats-server.

The signer is written from the Standard Webhooks spec, not taken from the SDK or the
simulator, so the tests check the SDK-based verifier against an independent signer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from shared.events import CALL_EVENTS_STREAM, CallEvent, read_call_events
from shared.settings import Settings
from shared.streams import WEBHOOKS_STREAM
from switchboard.nats_server import NatsServer


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def new_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(16)


def incoming_call(call_id: str, sip_headers: list[Any] | None = None, **data: Any) -> bytes:
    event = {
        "object": "event",
        "id": "evt_" + secrets.token_hex(8),
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id,
            "sip_headers": sip_headers
            if sip_headers is not None
            else [
                {"name": "From", "value": "sip:+14155550123@sip.example.com"},
                {"name": "To", "value": "sip:+18005551212@sip.example.com"},
            ],
            **data,
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


@dataclass
class Signer:
    secret: str

    def headers(
        self, body: bytes, webhook_id: str | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        webhook_id = webhook_id or new_webhook_id()
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self.secret, webhook_id, ts, body),
            "content-type": "application/json",
        }


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def webhook_messages(js: JetStreamContext) -> int:
    return (await js.stream_info(WEBHOOKS_STREAM)).state.messages


async def event_messages(js: JetStreamContext) -> int:
    return (await js.stream_info(CALL_EVENTS_STREAM)).state.messages


async def call_events(js: JetStreamContext, call_id: str) -> list[CallEvent]:
    return await read_call_events(js, call_id)


async def wait_readiness(
    client: httpx.AsyncClient, base: str, status: int, timeout: float = 20.0
) -> None:
    """Poll `/readyz` until it answers `status` (the state is only visible over HTTP)."""
    async with asyncio.timeout(timeout):
        while True:
            if (await client.get(f"{base}/readyz")).status_code == status:
                return
            await asyncio.sleep(0.05)


def ingress_settings(nats_url: str, secret: str, **overrides: Any) -> Settings:
    values = {
        "nats_url": nats_url,
        "openai_webhook_secret": secret,
        "log_format": "text",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def signer() -> Signer:
    return Signer(new_secret())


@pytest.fixture
async def ingress(nats_server: NatsServer, signer: Signer) -> AsyncIterator[Ingress]:
    running = Ingress(ingress_settings(nats_server.url, signer.secret), "127.0.0.1", 0)
    await running.start()
    await running.wait_connected()
    yield running
    await running.stop()


@pytest.fixture
def webhook_url(ingress: Ingress) -> str:
    return f"http://127.0.0.1:{ingress.http.port}{WEBHOOK_PATH}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield nc.jetstream()
    await nc.close()


def new_session_id() -> str:
    return "live_" + secrets.token_hex(16)


def live_incoming_call(
    session_id: str,
    sip_call_id: str | None = None,
    *,
    deprecated: bool = False,
    to: str = "+18005551212",
) -> bytes:
    """`live.transport.incoming` (or the deprecated `live.call.incoming`, no `data.type`)."""
    headers = [
        {"name": "From", "value": "sip:+14155550123@sip.example.com"},
        {"name": "To", "value": f"sip:{to}@sip.example.com"},
    ]
    if sip_call_id is not None:
        headers.append({"name": "Call-ID", "value": sip_call_id})
    data: dict[str, Any] = {"session_id": session_id, "sip_headers": headers}
    if not deprecated:
        data = {"type": "sip", **data, "sip_media_security": "srtp"}
    event = {
        "object": "event",
        "id": "evt_" + secrets.token_hex(8),
        "type": "live.call.incoming" if deprecated else "live.transport.incoming",
        "created_at": int(time.time()),
        "data": data,
    }
    return json.dumps(event, separators=(",", ":")).encode()
