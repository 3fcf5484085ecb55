"""Post-call webhooks delivered for real: a receiver on loopback, a real nats-server."""

from __future__ import annotations

import asyncio
import itertools
import logging

import httpx
import pytest
from nats.aio.client import Client
from prometheus_client import REGISTRY

from services.postcall.main import PostCall
from services.postcall.signing import webhook_id
from shared.events import CallEventPublisher
from tests.services.postcall.conftest import (
    Receiver,
    eventually,
    fanned_out,
    finished_call,
    outbox_drained,
    subscribe,
    verify,
    wait_delivering,
)


async def test_every_report_of_50_calls_arrives_once_signed(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    endpoint_id, secret = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    events = CallEventPublisher(nc.jetstream())
    calls = await asyncio.gather(*(finished_call(events) for _ in range(50)))

    await receiver.wait(lambda r: len(r.accepted()) >= 50)
    reports = {}
    for delivery in receiver.accepted():
        event = verify(delivery, secret)
        assert event["type"] == "call.report"
        assert set(event) == {"type", "call_id", "seq", "ts", "data"}
        assert delivery.webhook_id == webhook_id(endpoint_id, event["call_id"], event["seq"])
        reports[event["call_id"]] = event
    assert set(reports) == set(calls)
    await outbox_drained(nc, endpoint_id)  # every delivery acknowledged, none to come
    assert len(receiver.deliveries) == 50


async def test_a_500_then_200_is_retried_on_the_schedule(
    postcall: PostCall,
    api: httpx.AsyncClient,
    receiver: Receiver,
    nc: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.behaviour = lambda r, wid: (500, {}) if r.tries(wid) < 2 else (200, {})
    endpoint_id, secret = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    events = CallEventPublisher(nc.jetstream())
    calls = await asyncio.gather(*(finished_call(events) for _ in range(3)))

    await receiver.wait(lambda r: len(r.accepted()) >= 3)
    for call_id in calls:
        tries = sorted(
            (d for d in receiver.deliveries if verify(d, secret)["call_id"] == call_id),
            key=lambda d: d.at,
        )
        assert [d.status for d in tries] == [500, 500, 200]
        assert len({d.webhook_id for d in tries}) == 1  # the same id on every try
        # Schedule 0.2 s then 0.4 s, ±20 % jitter.
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
        assert 0.15 <= gaps[0] <= 0.2 * 1.2 + 1.0
        assert 0.3 <= gaps[1] <= 0.4 * 1.2 + 1.0
    assert "attempt 1 failed (http_5xx" in caplog.text
    assert secret not in caplog.text and secret.removeprefix("whsec_") not in caplog.text


async def test_retry_after_longer_than_the_schedule_wins(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    receiver.behaviour = lambda r, wid: (
        (429, {"Retry-After": "2"}) if r.tries(wid) < 1 else (200, {})
    )
    endpoint_id, _ = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    await finished_call(CallEventPublisher(nc.jetstream()))

    await receiver.wait(lambda r: len(r.accepted()) >= 1)
    first, second = receiver.deliveries
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.9  # not the schedule's 0.2 s


async def test_410_disables_the_endpoint(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    receiver.behaviour = lambda r, wid: (410, {})
    endpoint_id, _ = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    events = CallEventPublisher(nc.jetstream())
    await finished_call(events)
    await receiver.wait(lambda r: len(r.deliveries) >= 1)

    async def disabled() -> bool:
        return (await api.get(f"/webhooks/{endpoint_id}")).json()["disabled"] == "gone"

    await eventually(disabled)
    dead = await nc.jetstream().stream_info("POSTCALL_DEAD")
    assert dead.state.messages == 1
    await wait_delivering(postcall, endpoint_id, present=False)
    # Later calls are not queued for a disabled endpoint.
    await finished_call(events)
    await finished_call(events)
    await fanned_out(nc)
    outbox = await nc.jetstream().stream_info("POSTCALL_OUTBOX", subjects_filter=">")
    assert not (outbox.state.subjects or {}).get(f"postcall.outbox.{endpoint_id}")
    assert len(receiver.deliveries) == 1


async def test_a_hanging_endpoint_holds_up_no_other(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    hanging = Receiver(gate=asyncio.Event())
    await hanging.http.start()
    try:
        stuck_id, stuck_secret = await subscribe(api, hanging.url)
        fine_id, _ = await subscribe(api, receiver.url)
        await wait_delivering(postcall, stuck_id)
        await wait_delivering(postcall, fine_id)
        events = CallEventPublisher(nc.jetstream())
        calls = await asyncio.gather(*(finished_call(events) for _ in range(20)))

        await receiver.wait(lambda r: len(r.accepted()) >= 20)
        assert hanging.accepted() == []  # still hanging, while the other got everything
        hanging.gate.set()  # type: ignore[union-attr]
        await hanging.wait(lambda r: len(r.accepted_ids()) >= 20, timeout=30)
        assert {verify(d, stuck_secret)["call_id"] for d in hanging.accepted()} == set(calls)
    finally:
        hanging.gate.set()  # type: ignore[union-attr]
        await hanging.http.stop()


async def test_metrics_show_a_failing_endpoint_and_its_backlog(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    receiver.behaviour = lambda r, wid: (503, {})
    endpoint_id, _ = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    await finished_call(CallEventPublisher(nc.jetstream()))
    await receiver.wait(lambda r: len(r.deliveries) >= 2)

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"endpoint": endpoint_id, **labels}) or 0.0

    async def measured() -> bool:
        return sample("switchboard_webhook_backlog_age_seconds") > 0

    await eventually(measured)
    assert sample("switchboard_webhook_backlog_messages") == 1
    assert sample("switchboard_webhook_deliveries_total", outcome="http_5xx") >= 2
    assert sample("switchboard_webhook_deliveries_total", outcome="ok") == 0


async def test_a_deleted_endpoint_gets_nothing_more(
    postcall: PostCall, api: httpx.AsyncClient, receiver: Receiver, nc: Client
) -> None:
    endpoint_id, _ = await subscribe(api, receiver.url)
    await wait_delivering(postcall, endpoint_id)
    events = CallEventPublisher(nc.jetstream())
    await finished_call(events)
    await receiver.wait(lambda r: len(r.accepted()) == 1)

    assert (await api.delete(f"/webhooks/{endpoint_id}")).status_code == 200
    await wait_delivering(postcall, endpoint_id, present=False)
    await finished_call(events)
    await fanned_out(nc)
    outbox = await nc.jetstream().stream_info("POSTCALL_OUTBOX", subjects_filter=">")
    assert not (outbox.state.subjects or {}).get(f"postcall.outbox.{endpoint_id}")
    assert len(receiver.deliveries) == 1
