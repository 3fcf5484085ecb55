"""Replays and secret rotation: the same `webhook-id`s again, signed with both secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from nats.aio.client import Client

from services.postcall.main import PostCall
from shared.events import CallEventPublisher
from tests.services.postcall.conftest import (
    Receiver,
    finished_call,
    outbox_drained,
    subscribe,
    verify,
    wait_delivering,
)


async def test_replay_of_a_call_and_of_a_time_range_resends_the_same_ids(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    endpoint_id, secret = await subscribe(api, receiver.url, events=["call.report", "call.ended"])
    await wait_delivering(postcall, endpoint_id)
    events = CallEventPublisher(nc.jetstream())
    started = datetime.now(UTC) - timedelta(seconds=1)
    calls = [await finished_call(events) for _ in range(3)]
    await receiver.wait(lambda r: len(r.accepted()) >= 6)
    first = receiver.accepted_ids()
    assert len(first) == 6 and set(first.values()) == {1}

    answer = await api.post(f"/webhooks/{endpoint_id}/replay", json={"call_id": calls[1]})
    assert answer.status_code == 202 and answer.json() == {"queued": 2}
    await receiver.wait(lambda r: len(r.accepted()) >= 8)
    again = [d for d in receiver.accepted()[6:]]
    assert {verify(d, secret)["call_id"] for d in again} == {calls[1]}
    assert {d.webhook_id for d in again} <= set(first)

    until = datetime.now(UTC) + timedelta(seconds=1)
    answer = await api.post(
        f"/webhooks/{endpoint_id}/replay",
        json={"since": started.isoformat(), "until": until.isoformat()},
    )
    assert answer.json() == {"queued": 6}
    await receiver.wait(lambda r: len(r.accepted()) >= 14)
    await outbox_drained(nc, endpoint_id)
    assert set(receiver.accepted_ids()) == set(first)  # no new id, only repeats
    assert sum(receiver.accepted_ids().values()) == 14

    one = await api.post(f"/webhooks/{endpoint_id}/replay", json={"call_id": calls[0], "seq": 5})
    assert one.json() == {"queued": 1}  # the report alone
    await receiver.wait(lambda r: len(r.accepted()) >= 15)
    assert receiver.accepted()[-1].webhook_id in first
    missing = await api.post(
        f"/webhooks/{endpoint_id}/replay", json={"call_id": calls[0], "seq": 99}
    )
    assert missing.status_code == 404
    unknown = await api.post(f"/webhooks/{endpoint_id}/replay", json={"call_id": "rtc_nope"})
    assert unknown.status_code == 404
    bad = await api.post(f"/webhooks/{endpoint_id}/replay", json={})
    assert bad.status_code == 422


async def test_rotation_signs_with_both_secrets(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    endpoint_id, old = await subscribe(api, receiver.url)
    rotated = await api.post(f"/webhooks/{endpoint_id}/rotate", json={})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    await wait_delivering(postcall, endpoint_id)
    await finished_call(CallEventPublisher(nc.jetstream()))
    await receiver.wait(lambda r: len(r.accepted()) >= 1)
    delivery = receiver.accepted()[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    verify(delivery, new)
    verify(delivery, old)
