"""After the give-up age: a dead letter, and a replay that delivers with the same id."""

from __future__ import annotations

import httpx
import pytest
from nats.aio.client import Client

from services.postcall.delivery import DeadLetter
from services.postcall.main import PostCall
from shared.events import CallEventPublisher
from shared.settings import Settings
from switchboard.nats_server import NatsServer
from tests.services.postcall.conftest import (
    Receiver,
    fanned_out,
    finished_call,
    outbox_drained,
    postcall_settings,
    subscribe,
    verify,
    wait_delivering,
)


@pytest.fixture
def settings(nats_server: NatsServer) -> Settings:
    return postcall_settings(nats_server.url, switchboard_webhooks_max_age_s=1.0)


async def test_given_up_then_replayed_with_the_same_id(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    receiver.behaviour = lambda r, wid: (503, {})
    endpoint_id, secret = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    call_id = await finished_call(CallEventPublisher(nc.jetstream()))
    await fanned_out(nc)
    await receiver.wait(lambda r: len(r.deliveries) >= 1)
    await outbox_drained(nc, endpoint_id)  # acknowledged: given up, not lost
    tries = len(receiver.deliveries)
    assert tries >= 2 and receiver.accepted() == []

    js = nc.jetstream()
    dead = DeadLetter.model_validate_json(
        (await js.get_last_msg("POSTCALL_DEAD", f"postcall.dead.{endpoint_id}")).data
    )
    assert dead.reason == "max_age" and dead.event.call_id == call_id
    assert dead.last_status == 503 and dead.attempts == tries
    assert dead.webhook_id == receiver.deliveries[0].webhook_id

    receiver.behaviour = lambda r, wid: (200, {})
    replay = await api.post(f"/webhooks/{endpoint_id}/replay", json={"call_id": call_id})
    assert replay.json() == {"queued": 1}
    await receiver.wait(lambda r: len(r.accepted()) == 1)
    assert receiver.accepted()[0].webhook_id == dead.webhook_id
    assert verify(receiver.accepted()[0], secret)["call_id"] == call_id
