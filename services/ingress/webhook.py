"""What an incoming webhook is: verified or refused, and why. No I/O here.

Verification is the openai SDK's (Standard Webhooks, 300 s tolerance both ways); we add
what it does not do: several secrets during rotation, and a short, fixed reason for each
refusal so nothing of the request is echoed back.

Parsing trusts nothing but the signature. Past it, the event is still shaped by OpenAI from
caller-controlled SIP headers, so those are bounded here (count, lengths, no control
characters) instead of refusing the call: a refusal is a non-200 that OpenAI would retry
for 72 hours while the caller hears nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openai import AsyncOpenAI, InvalidWebhookSignatureError

from shared.calls import (
    MAX_SIP_HEADER_NAME,
    MAX_SIP_HEADER_VALUE,
    MAX_SIP_HEADERS,
    IncomingCall,
    SipHeader,
)
from shared.ids import is_call_id

CALL_INCOMING = "realtime.call.incoming"
# GPT-Live's incoming SIP call, and its deprecated name (same payload without `data.type`):
# both are handled while a project's old subscription drains.
LIVE_INCOMING = "live.transport.incoming"
LIVE_INCOMING_DEPRECATED = "live.call.incoming"
TOLERANCE_S = 300

# A call id becomes a NATS subject token and a KV key (the one rule: `shared.ids`); a
# webhook id becomes a Nats-Msg-Id header and a log field: short, printable ASCII.
_SESSION_ID = re.compile(r"live_[A-Za-z0-9_-]{1,128}")  # OpenAI's own pattern for Live ids
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")


class WebhookRefused(Exception):
    """The request is refused with `status`; `reason` is short, fixed and safe to return."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    type: str
    call: IncomingCall | None  # set for the incoming-call types of either API


class WebhookVerifier:
    """Verifies signatures against every configured secret and parses the event.

    `tolerance_s` is the replay window (OpenAI's is 300 s); tests that check a fixed,
    old test vector widen it instead of faking the clock.
    """

    def __init__(self, secrets: list[str], *, tolerance_s: int = TOLERANCE_S) -> None:
        if not secrets:
            raise ValueError("OPENAI_WEBHOOK_SECRET is not set")
        self._secrets = list(secrets)
        self._tolerance_s = tolerance_s
        # The SDK's verifier hangs off a client; no request is ever made with it.
        self._webhooks = AsyncOpenAI(api_key="unused-for-verification").webhooks

    def verify(self, raw: bytes, headers: Mapping[str, str], received_at: datetime) -> Webhook:
        """Verify the signature of `raw` (the bytes as received) and parse the event."""
        webhook_id = self._check_signature(raw, headers)
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise WebhookRefused(400, "invalid webhook-id")
        try:
            event: Any = json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested absurdly deep
            raise WebhookRefused(400, "malformed JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise WebhookRefused(400, "not an event")
        if event["type"] in (LIVE_INCOMING, LIVE_INCOMING_DEPRECATED):
            return self._live_call(webhook_id, event, received_at)
        if event["type"] != CALL_INCOMING:
            return Webhook(webhook_id=webhook_id, type=event["type"], call=None)
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("call_id"), str):
            raise WebhookRefused(400, "realtime.call.incoming without call_id")
        if not is_call_id(data["call_id"]):
            raise WebhookRefused(400, "invalid call_id")
        call = IncomingCall(
            webhook_id=webhook_id,
            call_id=data["call_id"],
            received_at=received_at,
            sip_headers=bounded_sip_headers(data.get("sip_headers")),
        )
        return Webhook(webhook_id=webhook_id, type=CALL_INCOMING, call=call)

    @staticmethod
    def _live_call(webhook_id: str, event: dict[str, Any], received_at: datetime) -> Webhook:
        """A GPT-Live incoming call: its `live_…` session id is the call's id from here on."""
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
            raise WebhookRefused(400, f"{event['type']} without session_id")
        if not _SESSION_ID.fullmatch(data["session_id"]):
            raise WebhookRefused(400, "invalid session_id")
        if data.get("type", "sip") != "sip":  # only SIP calls come this way
            return Webhook(webhook_id=webhook_id, type=event["type"], call=None)
        call = IncomingCall(
            webhook_id=webhook_id,
            call_id=data["session_id"],
            api="live",
            received_at=received_at,
            sip_headers=bounded_sip_headers(data.get("sip_headers")),
        )
        return Webhook(webhook_id=webhook_id, type=event["type"], call=call)

    def _check_signature(self, raw: bytes, headers: Mapping[str, str]) -> str:
        """The verified `webhook-id`, or a 401 refusal with its reason."""
        for secret in self._secrets:
            try:
                self._webhooks.verify_signature(
                    raw, headers, secret=secret, tolerance=self._tolerance_s
                )
            except InvalidWebhookSignatureError as error:
                # The timestamp checks come before the signature and do not depend on the
                # secret: one refusal holds for all of them.
                message = str(error)
                if "too old" in message:
                    raise WebhookRefused(401, "stale") from None
                if "too new" in message:
                    raise WebhookRefused(401, "future") from None
                if "timestamp" in message:
                    raise WebhookRefused(401, "bad_timestamp") from None
                continue  # maybe signed with the next secret (rotation)
            except UnicodeDecodeError:  # a body that is not UTF-8 cannot have been signed
                raise WebhookRefused(401, "bad_signature") from None
            except ValueError:  # a missing header: the SDK raises a plain ValueError
                raise WebhookRefused(401, "missing_headers") from None
            return _header(headers, "webhook-id")
        raise WebhookRefused(401, "bad_signature")


def bounded_sip_headers(raw: object) -> list[SipHeader]:
    """At most `MAX_SIP_HEADERS` name/value pairs, each cut to its maximum length.

    Entries that are not a pair of strings are dropped; control characters are stripped by
    `SipHeader` itself. Cutting happens before stripping, so the model's bounds always hold.
    """
    if not isinstance(raw, list):
        return []
    headers: list[SipHeader] = []
    for entry in raw:
        if len(headers) == MAX_SIP_HEADERS:
            break
        if not isinstance(entry, dict):
            continue
        name, value = entry.get("name"), entry.get("value")
        if isinstance(name, str) and isinstance(value, str):
            headers.append(
                SipHeader(name=name[:MAX_SIP_HEADER_NAME], value=value[:MAX_SIP_HEADER_VALUE])
            )
    return headers


def _header(headers: Mapping[str, str], name: str) -> str:
    """The first header of that name, as the SDK reads it (case-insensitive)."""
    return next(v for k, v in headers.items() if k.lower() == name)
