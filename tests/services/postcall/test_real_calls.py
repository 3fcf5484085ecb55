"""Real calls through every service (the simulator for OpenAI): the report of each of 50
calls reaches the subscriber once, verified by an independent Standard Webhooks
implementation, and the history lists exactly those calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client

from services.postcall.main import PostCall
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.services.postcall.conftest import (
    AUTH,
    TOKEN,
    Receiver,
    outbox_drained,
    subscribe,
    verify,
    wait_delivering,
)
from tests.stack import Stack

pytestmark = pytest.mark.slow
CALLS = 50
WAVE = 10
SHORT = CallerScript.model_validate(
    {
        "name": "short",
        "steps": [{"say": "Hi, just checking.", "reply": "Sure."}, {"hangup": True}],
    }
)


@pytest.fixture
async def stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    overrides = {"switchboard_control_token": TOKEN, "switchboard_webhooks_allow_private": True,
                 "switchboard_webhooks_poll_s": 0.1}  # fmt: skip
    running = await Stack(nats_server.url, capacity=CALLS, settings_overrides=overrides).start()
    yield running
    await running.stop()


async def test_reports_of_real_calls_are_delivered_and_listed(
    stack: Stack, receiver: Receiver, nc: Client
) -> None:
    assert stack.ingress is not None and stack.simulator is not None
    postcall = PostCall(stack.settings(), metrics_port=0, host="127.0.0.1")
    await postcall.start()
    try:
        base = f"http://127.0.0.1:{stack.ingress.http.port}"
        keepalive = httpx.Limits(keepalive_expiry=1.0)  # the waves leave it idle for long
        async with httpx.AsyncClient(
            base_url=base, headers=AUTH, timeout=15, limits=keepalive
        ) as api:
            endpoint_id, secret = await subscribe(api, receiver.url, agents=["default"])
            await wait_delivering(postcall, endpoint_id)
            calls = []
            for _ in range(CALLS // WAVE):  # in waves: a burst is an admission test, not this one
                wave = await asyncio.gather(
                    *(stack.simulator.place_call(SHORT, to="+18005551212") for _ in range(WAVE))
                )
                await stack.events.wait_finished([c.call_id for c in wave], timeout=90)
                calls += wave
            # On a loaded machine a call may miss its accept deadline: it has no report then.
            reported = {c.call_id for c in calls if stack.events.of_type(c.call_id, "call.report")}
            assert len(reported) >= CALLS * 0.8, f"only {len(reported)} calls got a report"
            await receiver.wait(lambda r: len(r.accepted()) >= len(reported), timeout=60)
            await outbox_drained(nc, endpoint_id)
            reports = [verify(d, secret) for d in receiver.accepted()]
            assert len(reports) == len(reported)  # once each
            assert {r["call_id"] for r in reports} == reported
            assert all(r["data"]["end_reason"] == "caller_hangup" for r in reports)

            history = (await api.get("/calls", params={"agent": "default", "limit": "500"})).json()
            listed = {c["call_id"] for c in history["calls"]}
            assert reported <= listed <= {c.call_id for c in calls}
            assert all(c["to"] == "+18005551212" for c in history["calls"])
    finally:
        await postcall.stop()
