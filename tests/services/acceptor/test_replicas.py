"""Two acceptor replicas on one nats-server, webhooks duplicated and redelivered under new
ids by the simulated OpenAI: every call is accepted exactly once."""

from __future__ import annotations

import asyncio

import nats
import pytest

from services.acceptor.main import Acceptor
from shared.streams import ACCEPTOR_CONSUMER, WEBHOOKS_STREAM
from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from tests.stack import Stack


async def webhooks_handled(stack: Stack, timeout: float) -> None:
    """Wait until the acceptors have taken and acknowledged every webhook published."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        async with asyncio.timeout(timeout):
            while True:
                info = await js.consumer_info(WEBHOOKS_STREAM, ACCEPTOR_CONSUMER)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
                await asyncio.sleep(0.05)  # polling JetStream's own state, with a timeout
    finally:
        await nc.close()


@pytest.mark.slow
async def test_two_replicas_racing_on_duplicates_accept_each_call_once(
    nats_server: NatsServer,
) -> None:
    stack = Stack(
        nats_server.url, faults=Faults(duplicate_webhooks=2, redeliver_new_id=3), capacity=50
    )
    await stack.start()
    second = Acceptor(stack.settings(), 0, "127.0.0.1")
    try:
        await second.start()
        assert stack.simulator is not None
        hang_up = CallerScript.model_validate({"steps": [{"hangup": True}]})
        calls = [await stack.simulator.place_call(hang_up) for _ in range(12)]
        await stack.events.wait_all([c.call_id for c in calls], "call.accepted", timeout=30)
        for call in calls:
            await call.wait_until(lambda c: len(c.webhook_attempts) >= 6, timeout=20)
        await webhooks_handled(stack, timeout=20)
        for call in calls:
            assert call.accept_attempts == 1, call
            assert call.accept_count == 1, call
            assert len(stack.events.of_type(call.call_id, "call.accepted")) == 1
    finally:
        await second.stop()
        await stack.stop()
