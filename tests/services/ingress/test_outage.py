"""NATS killed, paused and brought back, with the same ingress running throughout."""

from __future__ import annotations

import time

import httpx
from nats.js import JetStreamContext

from services.ingress.main import Ingress
from switchboard.nats_server import NatsServer
from tests.processes import stopped
from tests.services.ingress.conftest import (
    Signer,
    call_events,
    incoming_call,
    metric,
    new_call_id,
    new_webhook_id,
    wait_readiness,
    webhook_messages,
)

# The ingress promises 503 within 1 s; on a shared, busy test machine allow slack on top.
GENEROUS_S = 3.0


async def post(
    client: httpx.AsyncClient, url: str, signer: Signer, body: bytes, webhook_id: str
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = await client.post(url, content=body, headers=signer.headers(body, webhook_id))
    return reply, time.monotonic() - started


async def test_nats_killed_is_503_then_recovery_without_restarting_the_ingress(
    nats_server: NatsServer,
    ingress: Ingress,
    webhook_url: str,
    client: httpx.AsyncClient,
    signer: Signer,
    js: JetStreamContext,
) -> None:
    base = f"http://127.0.0.1:{ingress.http.port}"
    before = await post(client, webhook_url, signer, incoming_call(new_call_id()), "wh_before")
    assert before[0].status_code == 200
    unavailable = metric("switchboard_webhooks_total", outcome="unavailable")

    nats_server.kill()
    call_id = new_call_id()
    body, webhook_id = incoming_call(call_id), new_webhook_id()
    reply, elapsed = await post(client, webhook_url, signer, body, webhook_id)

    assert (reply.status_code, reply.json()) == (503, {"error": "event store unavailable"})
    assert elapsed < GENEROUS_S
    assert metric("switchboard_webhooks_total", outcome="unavailable") >= unavailable + 1
    await wait_readiness(client, base, 503)
    retried, _ = await post(client, webhook_url, signer, body, webhook_id)  # OpenAI retries
    assert retried.status_code == 503

    nats_server.start()  # same port, same store
    await wait_readiness(client, base, 200)
    recovered, _ = await post(client, webhook_url, signer, body, webhook_id)

    assert (recovered.status_code, recovered.json()) == (200, {"status": "published"})
    assert await webhook_messages(js) == 2  # the one before the outage, and this one
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]


async def test_nats_too_slow_is_503_and_the_late_publish_dedupes_with_the_retry(
    nats_server: NatsServer,
    webhook_url: str,
    client: httpx.AsyncClient,
    signer: Signer,
    js: JetStreamContext,
) -> None:
    """A paused server keeps the connection open: the publish is written, times out, and
    reaches JetStream later. OpenAI's retry under the same webhook id must not double it."""
    assert nats_server.process is not None
    pid = nats_server.process.pid
    call_id = new_call_id()
    body, webhook_id = incoming_call(call_id), new_webhook_id()

    with stopped(pid):
        reply, elapsed = await post(client, webhook_url, signer, body, webhook_id)

    assert (reply.status_code, reply.json()) == (503, {"error": "event store unavailable"})
    assert elapsed < GENEROUS_S
    retried, _ = await post(client, webhook_url, signer, body, webhook_id)
    assert retried.status_code == 200
    again, _ = await post(client, webhook_url, signer, body, webhook_id)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert await webhook_messages(js) == 1
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]
