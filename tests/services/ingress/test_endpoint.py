"""The webhook endpoint over real HTTP, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from nats.js import JetStreamContext
from nats.js.api import Header

from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from shared.events import CALL_EVENTS_STREAM, CallEvent, journal_subject
from switchboard.nats_server import NatsServer, free_port
from tests.services.ingress.conftest import (
    Signer,
    call_events,
    event_messages,
    incoming_call,
    ingress_settings,
    metric,
    new_call_id,
    new_webhook_id,
    wait_readiness,
    webhook_messages,
)

WEBHOOKS_TOTAL = "switchboard_webhooks_total"
AUTH_FAILURES = "switchboard_webhook_auth_failures_total"


async def test_a_verified_call_is_durable_before_the_200(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)
    headers = signer.headers(body)
    published = metric(WEBHOOKS_TOTAL, outcome="published")

    reply = await client.post(webhook_url, content=body, headers=headers)

    assert (reply.status_code, reply.json()) == (200, {"status": "published"})
    assert await webhook_messages(js) == 1
    message = await js.get_last_msg("WEBHOOKS", "webhooks.realtime.call.incoming")
    assert message.headers is not None
    assert message.headers[Header.MSG_ID.value] == headers["webhook-id"]
    stored = json.loads(message.data or b"")
    assert (stored["call_id"], stored["webhook_id"]) == (call_id, headers["webhook-id"])
    events = await call_events(js, call_id)
    assert [(e.type, e.seq) for e in events] == [("call.received", 1)]
    assert events[0].data["webhook_id"] == headers["webhook-id"]
    assert events[0].data["sip_headers"][1] == {
        "name": "To",
        "value": "sip:+18005551212@sip.example.com",
    }
    assert metric(WEBHOOKS_TOTAL, outcome="published") == published + 1


async def test_the_same_webhook_id_twice_is_one_event_downstream(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)
    webhook_id = new_webhook_id()

    first = await client.post(webhook_url, content=body, headers=signer.headers(body, webhook_id))
    again = await client.post(webhook_url, content=body, headers=signer.headers(body, webhook_id))

    assert (first.status_code, first.json()) == (200, {"status": "published"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert await webhook_messages(js) == 1
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]


async def test_concurrent_copies_of_one_webhook_are_one_event_downstream(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)
    webhook_id = new_webhook_id()

    replies = await asyncio.gather(
        *(
            client.post(webhook_url, content=body, headers=signer.headers(body, webhook_id))
            for _ in range(8)
        )
    )

    assert {r.status_code for r in replies} == {200}
    assert sorted(r.json()["status"] for r in replies) == ["duplicate"] * 7 + ["published"]
    assert await webhook_messages(js) == 1
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]


async def test_the_same_call_under_new_webhook_ids_is_received_once(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)

    replies = await asyncio.gather(
        *(client.post(webhook_url, content=body, headers=signer.headers(body)) for _ in range(4))
    )

    assert [r.json()["status"] for r in replies] == ["published"] * 4
    assert await webhook_messages(js) == 4  # the acceptor's claim makes these one accept
    assert [e.type for e in await call_events(js, call_id)] == ["call.received"]


async def test_call_received_is_never_added_to_a_call_that_has_events(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    """Beyond the msg-id dedupe window: a call with events already gets no second
    `call.received`, whatever its webhook id (here the `received:` msg id is unused)."""
    call_id = new_call_id()
    accepted = CallEvent(type="call.accepted", call_id=call_id, seq=1, ts=time.time(), data={})
    await js.publish(journal_subject(call_id), accepted.to_json(), stream=CALL_EVENTS_STREAM)
    body = incoming_call(call_id)

    reply = await client.post(webhook_url, content=body, headers=signer.headers(body))

    assert (reply.status_code, reply.json()) == (200, {"status": "published"})
    assert [e.type for e in await call_events(js, call_id)] == ["call.accepted"]


async def test_other_event_types_are_200_ignored_and_counted(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    body = json.dumps({"type": "live.transport.connected", "data": {"session_id": "live_x"}})
    body = body.encode()
    ignored = metric(WEBHOOKS_TOTAL, outcome="ignored")

    reply = await client.post(webhook_url, content=body, headers=signer.headers(body))

    assert (reply.status_code, reply.json()) == (200, {"status": "ignored"})
    assert metric(WEBHOOKS_TOTAL, outcome="ignored") == ignored + 1
    assert await webhook_messages(js) == 0
    assert await event_messages(js) == 0


async def test_refusals_publish_nothing_echo_nothing_and_count_their_reason(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    body = incoming_call("rtc_marker_call")
    now = int(time.time())
    good = signer.headers(body, webhook_id="wh_marker_id")
    cases = {
        "missing_headers": {"content-type": "application/json"},
        "bad_signature": {**good, "webhook-signature": "v1,bWFya2Vy"},
        "stale": signer.headers(body, "wh_marker_id", timestamp=now - 400),
        "future": signer.headers(body, "wh_marker_id", timestamp=now + 400),
        "bad_timestamp": {**good, "webhook-timestamp": "marker"},
    }
    for reason, headers in cases.items():
        before = metric(AUTH_FAILURES, reason=reason)

        reply = await client.post(webhook_url, content=body, headers=headers)

        assert (reply.status_code, reply.json()) == (401, {"error": reason})
        assert "marker" not in reply.text
        assert metric(AUTH_FAILURES, reason=reason) == before + 1
    assert await webhook_messages(js) == 0
    assert await event_messages(js) == 0


async def test_signed_but_malformed_is_400_and_publishes_nothing(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    for body in (b"{not json", b'{"type":"realtime.call.incoming","data":{}}'):
        reply = await client.post(webhook_url, content=body, headers=signer.headers(body))
        assert reply.status_code == 400
    assert await webhook_messages(js) == 0
    assert await event_messages(js) == 0


async def test_a_body_over_the_cap_is_413_before_anything_else(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    cap = 64 * 1024
    fits = incoming_call(new_call_id(), pad="")
    fits = incoming_call(new_call_id(), pad="x" * (cap - len(fits)))
    assert len(fits) == cap
    too_big = fits + b" "

    declared = await client.post(webhook_url, content=too_big, headers=signer.headers(too_big))

    async def chunks():
        for start in range(0, len(too_big), 4096):
            yield too_big[start : start + 4096]

    chunked = await client.post(webhook_url, content=chunks(), headers=signer.headers(too_big))
    unsigned = await client.post(webhook_url, content=b"x" * (cap + 1))
    exact = await client.post(webhook_url, content=fits, headers=signer.headers(fits))

    assert [r.status_code for r in (declared, chunked, unsigned)] == [413, 413, 413]
    assert exact.status_code == 200
    assert await webhook_messages(js) == 1


async def test_health_readiness_and_metrics(client: httpx.AsyncClient, ingress: Ingress) -> None:
    base = f"http://127.0.0.1:{ingress.http.port}"
    assert (await client.get(f"{base}/healthz")).status_code == 200
    assert (await client.get(f"{base}/readyz")).status_code == 200
    text = (await client.get(f"{base}/metrics")).text
    for name in (WEBHOOKS_TOTAL, AUTH_FAILURES, "switchboard_webhook_duration_seconds"):
        assert name in text


async def test_not_ready_and_503_until_nats_appears_then_ready_by_itself(
    client: httpx.AsyncClient, tmp_path: Path, signer: Signer
) -> None:
    port = free_port()
    ingress = Ingress(ingress_settings(f"nats://127.0.0.1:{port}", signer.secret), "127.0.0.1", 0)
    await ingress.start()
    server = NatsServer(tmp_path / "late-nats", port=port)
    try:
        base = f"http://127.0.0.1:{ingress.http.port}"
        body = incoming_call(new_call_id())
        webhook_id = new_webhook_id()
        assert (await client.get(f"{base}/healthz")).status_code == 200
        assert (await client.get(f"{base}/readyz")).status_code == 503
        early = await client.post(
            f"{base}{WEBHOOK_PATH}", content=body, headers=signer.headers(body, webhook_id)
        )
        assert (early.status_code, early.json()) == (503, {"error": "event store unavailable"})

        server.start()
        await wait_readiness(client, base, 200)

        late = await client.post(
            f"{base}{WEBHOOK_PATH}", content=body, headers=signer.headers(body, webhook_id)
        )
        assert (late.status_code, late.json()) == (200, {"status": "published"})
    finally:
        await ingress.stop()
        server.stop()
