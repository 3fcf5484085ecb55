"""Draining: readiness off at once, requests in flight still answered, in and out of process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from switchboard.nats_server import NatsServer, free_port
from tests.services.ingress.conftest import (
    Signer,
    call_events,
    incoming_call,
    new_call_id,
    wait_readiness,
    webhook_messages,
)

SWITCHBOARD = str(Path(sys.executable).parent / "switchboard")  # the console script


class SlowBody:
    """A request body sent in two halves; the second waits until the test releases it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.first_half_sent = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        half = len(self.body) // 2
        yield self.body[:half]
        self.first_half_sent.set()
        await self.release.wait()
        yield self.body[half:]


async def test_stop_finishes_a_request_in_flight_and_readiness_goes_503_at_once(
    ingress: Ingress,
    webhook_url: str,
    client: httpx.AsyncClient,
    signer: Signer,
    js: JetStreamContext,
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)
    slow = SlowBody(body)
    request = asyncio.create_task(
        client.post(webhook_url, content=slow, headers=signer.headers(body))
    )
    await asyncio.wait_for(slow.first_half_sent.wait(), 10)
    assert ingress.is_ready()

    stopping = asyncio.create_task(ingress.stop())
    await asyncio.sleep(0)  # let stop() begin; it flips readiness before any await
    assert not ingress.is_ready()
    assert not stopping.done()

    slow.release.set()
    reply = await asyncio.wait_for(request, 10)
    await asyncio.wait_for(stopping, 15)

    assert (reply.status_code, reply.json()) == (200, {"status": "published"})
    assert await webhook_messages(js) == 1
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]


@pytest.mark.slow
async def test_sigterm_to_a_real_ingress_process_finishes_the_request_in_flight(
    nats_server: NatsServer,
    signer: Signer,
    js: JetStreamContext,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "OPENAI_WEBHOOK_SECRET": signer.secret,
        "LOG_FORMAT": "text",
    }
    log_file = tmp_path / "ingress.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            SWITCHBOARD, "ingress", "--host", "127.0.0.1", "--port", str(port),
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_for_listener(client, base)
        await wait_readiness(client, base, 200)
        call_id = new_call_id()
        body = incoming_call(call_id)
        slow = SlowBody(body)
        request = asyncio.create_task(
            client.post(f"{base}{WEBHOOK_PATH}", content=slow, headers=signer.headers(body))
        )
        await asyncio.wait_for(slow.first_half_sent.wait(), 10)

        process.send_signal(signal.SIGTERM)
        await wait_for_listener_closed(base)  # the drain has begun
        slow.release.set()
        reply = await asyncio.wait_for(request, 15)

        assert (reply.status_code, reply.json()) == (200, {"status": "published"})
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert await webhook_messages(js) == 1
        assert [e.type for e in await call_events(js, call_id)] == ["call.received"]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    logs = log_file.read_text()
    assert signer.secret not in logs
    assert "draining" in logs


async def wait_for_listener(client: httpx.AsyncClient, base: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await client.get(f"{base}/healthz")
                return
            except httpx.ConnectError:
                await asyncio.sleep(0.05)  # polling a child process, bounded by the timeout


async def wait_for_listener_closed(base: str, timeout: float = 10) -> None:
    """Until the server stops taking new connections: refused, or (one accepted just as
    the listener closed) closed or reset without an answer."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with httpx.AsyncClient() as fresh:  # a new connection each time
                    await fresh.get(f"{base}/healthz")
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                return
            await asyncio.sleep(0.02)  # polling a child process, bounded by the timeout
