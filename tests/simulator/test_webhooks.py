"""Webhook signing (Standard Webhooks) and delivery semantics of the simulated OpenAI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import openai
from openai import AsyncOpenAI

from simulator import Faults, Simulator
from simulator.webhooks import sign, signed_headers

from .conftest import WEBHOOK_SECRET, WebhookReceiver

# Test vector from reference/openai-realtime-sip.md section 2.
VECTOR_ID = "wh_685342e6c53c8190a1be43f081506c52"
VECTOR_TS = 1750287078
VECTOR_BODY = (
    b'{"object":"event","id":"evt_685343a1381c819085d44c354e1b330e","type":"realtime.call.incoming",'
    b'"created_at":1750287018,"data":{"call_id":"rtc_479a275623b54bdb9b6fbae2f7cbd408",'
    b'"sip_headers":[{"name":"From","value":"sip:+14155550123@sip.example.com"},'
    b'{"name":"To","value":"sip:+18005551212@sip.example.com"},'
    b'{"name":"Call-ID","value":"03782086-4ce9-44bf-8b0d-4e303d2cc590"}]}}'
)
VECTOR_SIGNATURE = "v1,jyWfg9dKocY+Ckibgw4uTAKHTt6Zh89MekmnzIOqqeM="


def test_signer_reproduces_the_reference_vector() -> None:
    assert sign(WEBHOOK_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_vector_with_raw_hmac() -> None:
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{VECTOR_ID}.{VECTOR_TS}.".encode() + VECTOR_BODY, hashlib.sha256)
    assert "v1," + base64.b64encode(digest.digest()).decode() == VECTOR_SIGNATURE


def test_openai_sdk_accepts_what_we_sign() -> None:
    client = AsyncOpenAI(api_key="sk-unused", webhook_secret=WEBHOOK_SECRET)
    headers = signed_headers(WEBHOOK_SECRET, VECTOR_ID, VECTOR_BODY, timestamp=int(time.time()))
    client.webhooks.verify_signature(VECTOR_BODY, headers)  # raises if wrong
    tampered = VECTOR_BODY.replace(b"+1415", b"+1416")
    try:
        client.webhooks.verify_signature(tampered, headers)
    except openai.InvalidWebhookSignatureError:
        pass
    else:
        raise AssertionError("a tampered body verified")


async def test_incoming_call_webhook_is_signed_and_shaped(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    call = await simulator.place_call(to="+18005551212", from_="+14155550123")
    await webhook_receiver.wait_count(1)
    headers, body = webhook_receiver.received[0]
    AsyncOpenAI(api_key="x", webhook_secret=WEBHOOK_SECRET).webhooks.verify_signature(body, headers)
    assert headers["webhook-id"].startswith("wh_")
    event = json.loads(body)
    assert event["type"] == "realtime.call.incoming"
    assert event["object"] == "event" and event["id"].startswith("evt_")
    assert event["data"]["call_id"] == call.call_id
    assert len(call.call_id) == len("rtc_") + 32
    names = [h["name"] for h in event["data"]["sip_headers"]]
    assert names == ["From", "To", "Call-ID"]
    assert "+18005551212" in event["data"]["sip_headers"][1]["value"]


async def test_retries_on_500_with_the_same_id(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.status = lambda n: 500 if n < 2 else 200
    call = await simulator.place_call()
    await call.wait_until(lambda c: len(c.webhook_attempts) == 3)
    ids = {headers["webhook-id"] for headers, _ in webhook_receiver.received}
    assert len(ids) == 1
    assert [status for _, status, _ in call.webhook_attempts][:3] == [500, 500, 200]


async def test_redirect_counts_as_failure(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.status = lambda n: 307 if n == 0 else 200
    call = await simulator.place_call()
    await call.wait_until(lambda c: len(c.webhook_attempts) == 2)
    assert [status for _, status, _ in call.webhook_attempts] == [307, 200]


async def test_slow_receiver_is_retried(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    # webhook_timeout_s is 1.0 in the fixture: the first reply comes too late.
    webhook_receiver.delay = lambda n: 1.5 if n == 0 else 0.0
    call = await simulator.place_call()
    await call.wait_until(lambda c: len(c.webhook_attempts) == 2)
    assert call.webhook_attempts[0][1] is None
    assert call.webhook_attempts[1][1] == 200


async def test_gives_up_after_max_attempts(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.status = lambda n: 503
    call = await simulator.place_call()
    await call.wait_until(lambda c: len(c.webhook_attempts) == simulator.webhook_max_attempts)
    assert [status for _, status, _ in call.webhook_attempts] == [503] * 4
    assert len(webhook_receiver.received) == simulator.webhook_max_attempts
    assert call.state == "ringing"


async def test_duplicate_webhooks_fault(
    simulator: Simulator, webhook_receiver: WebhookReceiver, faults: Faults
) -> None:
    faults.duplicate_webhooks = 2
    call = await simulator.place_call()
    await webhook_receiver.wait_count(3)
    ids = [headers["webhook-id"] for headers, _ in webhook_receiver.received]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert {b["data"]["call_id"] for b in webhook_receiver.bodies()} == {call.call_id}


async def test_redeliver_under_new_ids_fault(
    simulator: Simulator, webhook_receiver: WebhookReceiver, faults: Faults
) -> None:
    faults.redeliver_new_id = 2
    call = await simulator.place_call()
    await webhook_receiver.wait_count(3)
    ids = {headers["webhook-id"] for headers, _ in webhook_receiver.received}
    assert len(ids) == 3
    assert {b["data"]["call_id"] for b in webhook_receiver.bodies()} == {call.call_id}
