"""The body of GPT-Live's incoming-call webhook, as OpenAI sends it (SDK-checked)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from openai.types.webhooks import LiveCallIncomingWebhookEvent, LiveTransportIncomingWebhookEvent

from shared.sdk_types import check_model


def sip_headers(to: str, from_: str, sip_call_id: str) -> list[dict[str, str]]:
    """The INVITE headers both APIs' webhooks carry for one SIP call."""
    return [
        {"name": "From", "value": f"sip:{from_}@sip.example.com"},
        {"name": "To", "value": f"sip:{to}@sip.example.com"},
        {"name": "Call-ID", "value": sip_call_id},
    ]


def live_incoming_event(
    session_id: str, to: str, from_: str, sip_call_id: str, *, deprecated: bool = False
) -> bytes:
    """`live.transport.incoming`, or the deprecated `live.call.incoming` (no `data.type`)."""
    data: dict[str, Any] = {
        "session_id": session_id,
        "sip_headers": sip_headers(to, from_, sip_call_id),
    }
    if not deprecated:
        data = {**data, "type": "sip", "sip_media_security": "srtp"}
    event = {
        "object": "event",
        "id": "evt_" + secrets.token_hex(16),
        "type": "live.call.incoming" if deprecated else "live.transport.incoming",
        "created_at": int(time.time()),
        "data": data,
    }
    check_model(
        LiveCallIncomingWebhookEvent if deprecated else LiveTransportIncomingWebhookEvent, event
    )
    return json.dumps(event, separators=(",", ":")).encode()
