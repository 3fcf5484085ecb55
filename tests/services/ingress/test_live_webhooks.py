"""GPT-Live's incoming calls at the ingress: verified, deduplicated and durable exactly as
Realtime's, with the `live_…` session id as the call id and `api` in the first event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.api import Header
from openai import AsyncOpenAI
from openai.types.webhooks import LiveCallIncomingWebhookEvent, LiveTransportIncomingWebhookEvent

from services.ingress.webhook import WebhookRefused, WebhookVerifier
from shared.streams import LIVE_INCOMING_CALL_SUBJECT, WEBHOOKS_STREAM
from tests.services.ingress.conftest import (
    Signer,
    call_events,
    incoming_call,
    live_incoming_call,
    new_call_id,
    new_secret,
    new_session_id,
    webhook_messages,
)


def parse(body: bytes, secret: str | None = None):
    secret = secret or new_secret()
    headers = Signer(secret).headers(body)
    return WebhookVerifier([secret]).verify(body, headers, datetime.now(UTC))


@pytest.mark.parametrize("deprecated", [False, True])
def test_both_live_names_are_a_live_call_and_are_the_sdks_shape(deprecated: bool) -> None:
    session_id = new_session_id()
    body = live_incoming_call(session_id, "sip-call-1", deprecated=deprecated)
    secret = new_secret()
    # Our test payloads are what the SDK parses (the contract test of the fixture itself).
    unwrapped = AsyncOpenAI(api_key="x").webhooks.unwrap(
        body, Signer(secret).headers(body), secret=secret
    )
    expected = LiveCallIncomingWebhookEvent if deprecated else LiveTransportIncomingWebhookEvent
    assert isinstance(unwrapped, expected)

    call = parse(body, secret).call
    assert call is not None
    assert (call.api, call.call_id, call.header("Call-ID")) == ("live", session_id, "sip-call-1")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"sip_headers": []}, "live.transport.incoming without session_id"),
        ({"session_id": "rtc_abc"}, "invalid session_id"),
        ({"session_id": "live_a.b"}, "invalid session_id"),
        ({"session_id": "live_" + "x" * 129}, "invalid session_id"),
    ],
)
def test_a_live_call_without_a_valid_session_id_is_400(data: dict, reason: str) -> None:
    body = json.dumps({"type": "live.transport.incoming", "data": {"type": "sip", **data}})
    with pytest.raises(WebhookRefused) as refused:
        parse(body.encode())
    assert (refused.value.status, refused.value.reason) == (400, reason)


async def test_a_live_call_is_durable_once_before_the_200(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    session_id = new_session_id()
    body = live_incoming_call(session_id, "sip-1")
    headers = signer.headers(body)

    first = await client.post(webhook_url, content=body, headers=headers)
    again = await client.post(
        webhook_url, content=body, headers=signer.headers(body, headers["webhook-id"])
    )

    assert (first.status_code, first.json()) == (200, {"status": "published"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert await webhook_messages(js) == 1
    message = await js.get_last_msg(WEBHOOKS_STREAM, LIVE_INCOMING_CALL_SUBJECT)
    assert message.headers is not None
    assert message.headers[Header.MSG_ID.value] == headers["webhook-id"]
    stored = json.loads(message.data or b"")
    assert (stored["call_id"], stored["api"]) == (session_id, "live")
    [received] = await call_events(js, session_id)
    assert (received.type, received.seq, received.call_id) == ("call.received", 1, session_id)
    assert received.data["api"] == "live"
    assert received.data["webhook_id"] == headers["webhook-id"]


async def test_the_first_event_of_a_realtime_call_says_realtime(
    client: httpx.AsyncClient, webhook_url: str, signer: Signer, js: JetStreamContext
) -> None:
    call_id = new_call_id()
    body = incoming_call(call_id)
    assert (await client.post(webhook_url, content=body, headers=signer.headers(body))).json() == {
        "status": "published"
    }
    [received] = await call_events(js, call_id)
    assert received.data["api"] == "realtime"


async def test_a_bad_signature_on_a_live_call_publishes_nothing(
    client: httpx.AsyncClient, webhook_url: str, js: JetStreamContext
) -> None:
    body = live_incoming_call(new_session_id())
    reply = await client.post(webhook_url, content=body, headers=Signer(new_secret()).headers(body))
    assert (reply.status_code, reply.json()) == (401, {"error": "bad_signature"})
    assert await webhook_messages(js) == 0
