"""What an incoming webhook is: verified or refused, and why. No I/O here.

Verification is the openai SDK's (Standard Webhooks, 300 s tolerance); we add what it does
not do: several secrets during rotation, and a short, fixed reason for each refusal so
nothing of the request is echoed back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openai import AsyncOpenAI, InvalidWebhookSignatureError
from pydantic import ValidationError

from shared.calls import IncomingCall

CALL_INCOMING = "realtime.call.incoming"
TOLERANCE_S = 300


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
    call: IncomingCall | None  # set for realtime.call.incoming


class WebhookVerifier:
    def __init__(self, secrets: list[str]) -> None:
        if not secrets:
            raise ValueError("OPENAI_WEBHOOK_SECRET is not set")
        self._secrets = secrets
        # The SDK's verifier hangs off a client; no request is ever made with it.
        self._webhooks = AsyncOpenAI(api_key="unused-for-verification").webhooks

    def verify(self, raw: bytes, headers: Mapping[str, str], received_at: datetime) -> Webhook:
        """Verify the signature of `raw` (the bytes as received) and parse the event."""
        self._check_signature(raw, headers)
        webhook_id = next(v for k, v in headers.items() if k.lower() == "webhook-id")
        try:
            event: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookRefused(400, "malformed JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise WebhookRefused(400, "not an event")
        if event["type"] != CALL_INCOMING:
            return Webhook(webhook_id=webhook_id, type=event["type"], call=None)
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("call_id"), str):
            raise WebhookRefused(400, "realtime.call.incoming without call_id")
        try:
            call = IncomingCall(
                webhook_id=webhook_id,
                call_id=data["call_id"],
                received_at=received_at,
                sip_headers=data.get("sip_headers") or [],
            )
        except ValidationError:
            raise WebhookRefused(400, "invalid call_id or sip_headers") from None
        if not _valid_call_id(call.call_id):
            raise WebhookRefused(400, "invalid call_id")
        return Webhook(webhook_id=webhook_id, type=CALL_INCOMING, call=call)

    def _check_signature(self, raw: bytes, headers: Mapping[str, str]) -> None:
        reason = "bad_signature"
        for secret in self._secrets:
            try:
                self._webhooks.verify_signature(raw, headers, secret=secret, tolerance=TOLERANCE_S)
                return
            except InvalidWebhookSignatureError as error:
                message = str(error)
                if "too old" in message:
                    raise WebhookRefused(401, "stale") from None
                if "too new" in message:
                    raise WebhookRefused(401, "future") from None
                if "timestamp" in message:
                    raise WebhookRefused(401, "bad_timestamp") from None
            except UnicodeDecodeError:  # a body that is not UTF-8 cannot have been signed
                raise WebhookRefused(401, reason) from None
            except ValueError:  # a missing header: the SDK raises a plain ValueError
                raise WebhookRefused(401, "missing_headers") from None
        raise WebhookRefused(401, reason)


def _valid_call_id(call_id: str) -> bool:
    """A call id becomes a NATS subject token and a KV key: keep it to safe characters."""
    return 0 < len(call_id) <= 128 and all(c.isalnum() or c in "_-" for c in call_id)
