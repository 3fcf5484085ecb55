"""OpenAI's duplicates through the ingress and the acceptor together: one accept per call."""

from __future__ import annotations

import asyncio

import httpx
from nats.js import JetStreamContext

from shared.streams import ACCEPTOR_CONSUMER, WEBHOOKS_STREAM
from simulator import CallerScript, SimulatedCall
from tests.services.ingress.conftest import Signer, incoming_call, metric, new_webhook_id
from tests.stack import Stack

HANG_UP = CallerScript.model_validate({"name": "brief", "steps": [{"hangup": True}]})


async def acceptor_caught_up(js: JetStreamContext, timeout: float = 20.0) -> None:
    """Every webhook message in the stream has been handled by the acceptor."""
    async with asyncio.timeout(timeout):
        while True:
            info = await js.consumer_info(WEBHOOKS_STREAM, ACCEPTOR_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)  # polling server state, bounded by the timeout


async def deliveries_done(call: SimulatedCall, count: int, timeout: float = 20.0) -> None:
    await call.wait_until(
        lambda c: sum(1 for _, status, _ in c.webhook_attempts if status == 200) >= count,
        timeout=timeout,
    )


async def test_duplicate_and_redelivered_webhooks_make_one_accept(
    stack: Stack, js: JetStreamContext
) -> None:
    assert stack.simulator is not None
    stack.simulator.faults.duplicate_webhooks = 3  # the same webhook-id 4 times
    stack.simulator.faults.redeliver_new_id = 2  # and the same call under 2 new ids
    published = metric("switchboard_webhooks_total", outcome="published")
    duplicate = metric("switchboard_webhooks_total", outcome="duplicate")

    call = await stack.simulator.place_call(HANG_UP)
    await deliveries_done(call, 6)
    await stack.events.wait_for(call.call_id, "call.accepted")
    await acceptor_caught_up(js)

    assert metric("switchboard_webhooks_total", outcome="published") == published + 3
    assert metric("switchboard_webhooks_total", outcome="duplicate") == duplicate + 3
    assert call.accept_count == 1
    assert len(stack.events.of_type(call.call_id, "call.received")) == 1
    assert len(stack.events.of_type(call.call_id, "call.accepted")) == 1
    assert stack.events.types(call.call_id)[:2] == ["call.received", "call.accepted"]


async def test_a_late_redelivery_under_a_new_id_is_not_a_second_accept(
    stack: Stack, js: JetStreamContext
) -> None:
    """What OpenAI does after the dedupe window: the same call, a webhook id never seen."""
    assert stack.simulator is not None
    call = await stack.simulator.place_call(HANG_UP)
    await stack.events.wait_for(call.call_id, "call.accepted")
    body = incoming_call(call.call_id)
    signer = Signer(stack.secret)

    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(
            stack.webhook_url, content=body, headers=signer.headers(body, new_webhook_id())
        )
    await acceptor_caught_up(js)

    assert (reply.status_code, reply.json()) == (200, {"status": "published"})
    assert call.accept_count == 1
    assert len(stack.events.of_type(call.call_id, "call.received")) == 1
    assert len(stack.events.of_type(call.call_id, "call.accepted")) == 1
