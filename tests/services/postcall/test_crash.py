"""Kill the post-call process mid-batch, restart NATS: nothing lost, and any duplicate
carries the same `webhook-id` as the first delivery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime

import httpx
import nats
import pytest
from pydantic import SecretStr

from shared.endpoints import Endpoint, EndpointStore, new_secret
from shared.events import CallEventPublisher
from shared.postcall import declare_postcall_topology
from shared.streams import declare_topology
from switchboard.nats_server import NatsServer, free_port
from tests.services.postcall.conftest import Receiver, finished_call, verify

pytestmark = pytest.mark.slow
CALLS = 60


class PostCallProcess:
    """`switchboard postcall` as its own process, to be killed without a goodbye."""

    def __init__(self, nats_url: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "NATS_URL": nats_url,
            "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE": "1",
            "SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE": "0.2,0.5",
            "SWITCHBOARD_WEBHOOKS_CONCURRENCY": "4",
            "SWITCHBOARD_WEBHOOKS_POLL_S": "0.1",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "postcall", "--metrics-port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    async def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        assert self.process is not None
        async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
            while True:
                assert self.process.poll() is None, "postcall exited at start"
                with contextlib.suppress(httpx.HTTPError):
                    ready = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                    if ready.status_code == 200:
                        return
                await asyncio.sleep(0.1)  # polling a child process' readiness

    async def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                await self.kill()


async def test_kill_mid_batch_and_restart_nats_loses_nothing(
    nats_server: NatsServer, receiver: Receiver
) -> None:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await declare_topology(js)
    await declare_postcall_topology(js)
    secret = new_secret()
    endpoint = Endpoint(id="crm", url=receiver.url, secret=SecretStr(secret),
                        created_at=datetime.now(UTC))  # fmt: skip
    await (await EndpointStore.open(js)).put(endpoint)
    first = PostCallProcess(nats_server.url)
    second = PostCallProcess(nats_server.url)
    try:
        await first.start()
        events = CallEventPublisher(js)
        calls = [await finished_call(events) for _ in range(CALLS)]
        await receiver.wait(lambda r: len(r.deliveries) >= CALLS // 4, timeout=60)
        receiver.gate = asyncio.Event()  # from now on requests hang: a batch is in flight
        await receiver.wait(lambda r: r.arrived > len(r.deliveries), timeout=60)
        await first.kill()  # mid-batch: some delivered, some in flight, most still queued
        receiver.gate.set()
        receiver.gate = None
        assert len({verify(d, secret)["call_id"] for d in receiver.deliveries}) < CALLS

        await asyncio.to_thread(nats_server.kill)
        await asyncio.to_thread(nats_server.start)
        await second.start()
        await receiver.wait(lambda r: len(r.accepted()) >= CALLS // 2 + CALLS // 4, timeout=120)
        await asyncio.to_thread(nats_server.kill)  # again, while the new process delivers
        await asyncio.to_thread(nats_server.start)
        await receiver.wait(lambda r: len({verify(d, secret)["call_id"] for d in r.accepted()})
                            >= CALLS, timeout=120)  # fmt: skip
    finally:
        await first.kill()
        await second.stop()
        await nc.close()

    ids_by_call: dict[str, set[str]] = defaultdict(set)
    for delivery in receiver.accepted():
        event = verify(delivery, secret)
        assert event["type"] == "call.report"
        ids_by_call[event["call_id"]].add(delivery.webhook_id)
    assert set(ids_by_call) == set(calls)  # nothing lost
    assert all(len(ids) == 1 for ids in ids_by_call.values())  # repeats keep their id
