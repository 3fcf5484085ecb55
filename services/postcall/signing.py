"""Standard Webhooks signatures on our own deliveries, as OpenAI signs the ones it sends us.

The `standardwebhooks` library computes each `v1,<base64>` signature; during a secret's
rotation there are two, space-separated, and a receiver accepts either. The `webhook-id`
is derived from the endpoint and the event (`call_id`, `seq`), so every retry and every
replay of one event to one endpoint carries the same id, and receivers can deduplicate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from standardwebhooks.webhooks import Webhook

USER_AGENT = "Switchboard-Webhooks/1"


def webhook_id(endpoint_id: str, call_id: str, seq: int) -> str:
    """Stable per event and endpoint; says nothing about either to a third party."""
    digest = hashlib.sha256(f"{endpoint_id}\n{call_id}\n{seq}".encode()).hexdigest()
    return "msg_" + digest[:32]


def signed_headers(
    secrets: list[str], message_id: str, body: bytes, now: datetime
) -> dict[str, str]:
    """The headers of one attempt: signed over `id.timestamp.body` with every secret."""
    text = body.decode()
    signatures = [Webhook(secret).sign(message_id, now, text) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
