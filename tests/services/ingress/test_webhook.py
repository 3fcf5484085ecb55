"""The verifier and parser on their own: no server, no clock faked."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from services.ingress.webhook import (
    CALL_INCOMING,
    WebhookRefused,
    WebhookVerifier,
    bounded_sip_headers,
)
from shared.calls import MAX_SIP_HEADER_NAME, MAX_SIP_HEADER_VALUE, MAX_SIP_HEADERS
from tests.services.ingress.conftest import (
    Signer,
    incoming_call,
    new_call_id,
    new_secret,
    new_webhook_id,
    sign,
)

# openai-realtime-sip.md §2 (OpenAI's documented example).
VECTOR_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
VECTOR_ID = "wh_685342e6c53c8190a1be43f081506c52"
VECTOR_TS = 1750287078
VECTOR_BODY = (
    b'{"object":"event","id":"evt_685343a1381c819085d44c354e1b330e",'
    b'"type":"realtime.call.incoming","created_at":1750287018,'
    b'"data":{"call_id":"rtc_479a275623b54bdb9b6fbae2f7cbd408",'
    b'"sip_headers":[{"name":"From","value":"sip:+14155550123@sip.example.com"},'
    b'{"name":"To","value":"sip:+18005551212@sip.example.com"},'
    b'{"name":"Call-ID","value":"03782086-4ce9-44bf-8b0d-4e303d2cc590"}]}}'
)
VECTOR_SIGNATURE = "v1,jyWfg9dKocY+Ckibgw4uTAKHTt6Zh89MekmnzIOqqeM="
VECTOR_HEADERS = {
    "webhook-id": VECTOR_ID,
    "webhook-timestamp": str(VECTOR_TS),
    "webhook-signature": VECTOR_SIGNATURE,
}
NOW = datetime.now(UTC)
TEN_YEARS_S = 10 * 365 * 24 * 3600


def refusal(verifier: WebhookVerifier, body: bytes, headers: dict[str, str]) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as refused:
        verifier.verify(body, headers, NOW)
    return refused.value


# ---------------------------------------------------------------- the documented test vector


def test_the_documented_vector_verifies_with_a_wide_enough_window() -> None:
    verifier = WebhookVerifier([VECTOR_SECRET], tolerance_s=TEN_YEARS_S)
    webhook = verifier.verify(VECTOR_BODY, VECTOR_HEADERS, NOW)
    assert webhook.webhook_id == VECTOR_ID
    assert webhook.type == CALL_INCOMING
    assert webhook.call is not None
    assert webhook.call.call_id == "rtc_479a275623b54bdb9b6fbae2f7cbd408"
    assert webhook.call.header("to") == "sip:+18005551212@sip.example.com"


def test_our_signer_agrees_with_the_documented_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_documented_vector_is_stale_today() -> None:
    refused = refusal(WebhookVerifier([VECTOR_SECRET]), VECTOR_BODY, VECTOR_HEADERS)
    assert (refused.status, refused.reason) == (401, "stale")


def test_the_vector_with_one_byte_changed_is_refused() -> None:
    verifier = WebhookVerifier([VECTOR_SECRET], tolerance_s=TEN_YEARS_S)
    tampered = VECTOR_BODY.replace(b"+18005551212", b"+18005551213")
    refused = refusal(verifier, tampered, VECTOR_HEADERS)
    assert (refused.status, refused.reason) == (401, "bad_signature")


# ---------------------------------------------------------------- the replay window, real clock


def test_a_webhook_signed_now_verifies() -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    webhook = WebhookVerifier([signer.secret]).verify(body, signer.headers(body), NOW)
    assert webhook.call is not None


@pytest.mark.parametrize("age_s", [-240, 240])
def test_a_timestamp_inside_the_window_verifies(age_s: int) -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = signer.headers(body, timestamp=int(time.time()) - age_s)
    assert WebhookVerifier([signer.secret]).verify(body, headers, NOW).call is not None


def test_a_timestamp_older_than_300_s_is_stale() -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = signer.headers(body, timestamp=int(time.time()) - 360)
    refused = refusal(WebhookVerifier([signer.secret]), body, headers)
    assert (refused.status, refused.reason) == (401, "stale")


def test_a_timestamp_more_than_300_s_ahead_is_future() -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = signer.headers(body, timestamp=int(time.time()) + 360)
    refused = refusal(WebhookVerifier([signer.secret]), body, headers)
    assert (refused.status, refused.reason) == (401, "future")


@pytest.mark.parametrize("timestamp", ["yesterday", "1.7e9", "", "9" * 5000])
def test_a_timestamp_that_is_not_a_number_is_refused(timestamp: str) -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = {**signer.headers(body), "webhook-timestamp": timestamp}
    refused = refusal(WebhookVerifier([signer.secret]), body, headers)
    assert refused.status == 401
    assert refused.reason in {"bad_timestamp", "missing_headers"}


# ---------------------------------------------------------------- secrets and signatures


def test_any_of_several_secrets_verifies_during_rotation() -> None:
    old, new = new_secret(), new_secret()
    verifier = WebhookVerifier([old, new])
    for secret in (old, new):
        signer = Signer(secret)
        body = incoming_call(new_call_id())
        assert verifier.verify(body, signer.headers(body), NOW).call is not None


def test_any_of_several_signatures_in_the_header_verifies() -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = signer.headers(body)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert WebhookVerifier([signer.secret]).verify(body, headers, NOW).call is not None


def test_a_signature_by_another_secret_is_refused() -> None:
    body = incoming_call(new_call_id())
    headers = Signer(new_secret()).headers(body)
    refused = refusal(WebhookVerifier([new_secret(), new_secret()]), body, headers)
    assert (refused.status, refused.reason) == (401, "bad_signature")


def test_a_signature_over_another_webhook_id_is_refused() -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = {**signer.headers(body), "webhook-id": new_webhook_id()}
    refused = refusal(WebhookVerifier([signer.secret]), body, headers)
    assert (refused.status, refused.reason) == (401, "bad_signature")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    signer = Signer(new_secret())
    body = incoming_call(new_call_id())
    headers = {k: v for k, v in signer.headers(body).items() if k != missing}
    refused = refusal(WebhookVerifier([signer.secret]), body, headers)
    assert (refused.status, refused.reason) == (401, "missing_headers")


def test_a_body_that_is_not_utf8_is_refused_as_unsigned() -> None:
    signer = Signer(new_secret())
    body = b"\xff\xfe" + incoming_call(new_call_id())
    refused = refusal(WebhookVerifier([signer.secret]), body, signer.headers(body))
    assert (refused.status, refused.reason) == (401, "bad_signature")


def test_a_refusal_never_echoes_the_request() -> None:
    body = b'{"type":"realtime.call.incoming","data":{"call_id":"rtc_secret_marker"}}'
    headers = {"webhook-id": "wh_marker", "webhook-timestamp": "1", "webhook-signature": "x"}
    refused = refusal(WebhookVerifier([new_secret()]), body, headers)
    assert "marker" not in refused.reason and "marker" not in str(refused)


def test_no_secret_is_a_start_up_error() -> None:
    with pytest.raises(ValueError):
        WebhookVerifier([])


# ---------------------------------------------------------------- parsing past the signature


SIGNER = Signer(new_secret())
VERIFIER = WebhookVerifier([SIGNER.secret])


def parse(body: bytes, webhook_id: str | None = None):
    return VERIFIER.verify(body, SIGNER.headers(body, webhook_id=webhook_id), NOW)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1,2]", b'"text"', b'{"no":"type"}', b'{"type":7}', b"[" * 50_000],
)
def test_a_signed_body_that_is_not_an_event_is_400(body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(body)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "data",
    [None, {}, {"call_id": 7}, {"call_id": ""}, {"call_id": "rtc_a.b"}, {"call_id": "a" * 257}],
)
def test_an_incoming_call_without_a_usable_call_id_is_400(data: object) -> None:
    body = json.dumps({"type": CALL_INCOMING, "data": data}).encode()
    with pytest.raises(WebhookRefused) as refused:
        parse(body)
    assert refused.value.status == 400


def test_a_webhook_id_that_is_not_printable_ascii_is_400() -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(incoming_call(new_call_id()), webhook_id="wh_é" + "x" * 10)
    assert refused.value.status == 400


@pytest.mark.parametrize("type_", ["live.transport.connected", "realtime.call.ended", "x"])
def test_other_event_types_are_verified_and_ignored(type_: str) -> None:
    webhook = parse(json.dumps({"type": type_, "data": {"call_id": "rtc_1"}}).encode())
    assert (webhook.type, webhook.call) == (type_, None)


def test_unknown_fields_and_media_security_do_not_break_parsing() -> None:
    body = incoming_call(new_call_id(), sip_media_security="quantum", extra={"a": [1, None]})
    assert parse(body).call is not None


# ---------------------------------------------------------------- SIP headers are untrusted


def test_sip_headers_are_bounded_in_count_and_length() -> None:
    raw = [{"name": "N" * 1000, "value": "v" * 100_000} for _ in range(1000)]
    call = parse(incoming_call(new_call_id(), sip_headers=raw)).call
    assert call is not None
    assert len(call.sip_headers) == MAX_SIP_HEADERS
    assert all(len(h.name) == MAX_SIP_HEADER_NAME for h in call.sip_headers)
    assert all(len(h.value) == MAX_SIP_HEADER_VALUE for h in call.sip_headers)


def test_control_characters_never_pass() -> None:
    nasty = "Bob\r\nX-Injected: 1\x00\x1b[31m\u2028\u202eevil\u200b\x85\ufeff"
    call = parse(incoming_call(new_call_id(), sip_headers=[{"name": "From\n", "value": nasty}]))
    assert call.call is not None
    header = call.call.sip_headers[0]
    assert header.name == "From"
    assert header.value == "BobX-Injected: 1[31mevil"


def test_malformed_sip_header_entries_are_dropped_not_fatal() -> None:
    raw = [1, "From", None, {"name": "To"}, {"name": 1, "value": "x"}, {"name": "To", "value": "y"}]
    assert [(h.name, h.value) for h in bounded_sip_headers(raw)] == [("To", "y")]
    assert bounded_sip_headers({"name": "To"}) == []
    assert bounded_sip_headers(None) == []
