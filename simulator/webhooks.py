"""The webhook side of the simulated OpenAI: signing and at-least-once delivery.

Signing is Standard Webhooks, written by hand because the openai SDK only *verifies*
signatures. Delivery follows OpenAI's documented behaviour: only an exact 200 counts, anything
else (other status, redirect, error, a reply slower than the timeout) is retried with
exponential backoff, and duplicates are possible (the `Faults` make them certain).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>` over `id.ts.body`."""
    message = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, body: bytes, timestamp: int | None = None):
    """Headers of one delivery attempt; each attempt is signed with its own timestamp."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
        "content-type": "application/json",
        "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks) (simulator)",
    }


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(16)


def incoming_call_event(call_id: str, to: str, from_: str, sip_call_id: str | None = None) -> bytes:
    """The raw body of `realtime.call.incoming`, shaped like OpenAI's."""
    now = int(time.time())
    event: dict[str, Any] = {
        "object": "event",
        "id": "evt_" + secrets.token_hex(16),
        "type": "realtime.call.incoming",
        "created_at": now,
        "data": {
            "call_id": call_id,
            "sip_headers": [
                {"name": "From", "value": f"sip:{from_}@sip.example.com"},
                {"name": "To", "value": f"sip:{to}@sip.example.com"},
                {"name": "Call-ID", "value": sip_call_id or str(uuid.uuid4())},
            ],
            "sip_media_security": "srtp",
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


# Called after every attempt: (webhook_id, http status or None, latency in seconds).
AttemptHook = Callable[[str, int | None, float], None]


class WebhookSender:
    """Delivers signed webhooks over one shared HTTP client (no per-call connections)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float,
        retry_base_s: float,
        max_attempts: int,
        concurrency: int = 10,
    ) -> None:
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts
        # httpcore's pool rescans every queued request on each state change (O(queued x
        # connections)): 1,000 requests queued on a 256-connection pool took 20 s. A semaphore
        # keeps the queue short and the pool small; ~1,000 webhooks/s on loopback.
        self._gate = asyncio.Semaphore(concurrency)
        # Redirects count as failures, so they are never followed.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def deliver(
        self,
        webhook_id: str,
        body: bytes,
        on_attempt: AttemptHook,
        on_send: Callable[[], None] | None = None,
    ) -> bool:
        """Send until an exact 200 or `max_attempts`; return whether it was delivered.

        `on_send` runs as each attempt actually leaves (after waiting for a slot).
        """
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))
            status: int | None
            async with self._gate:
                started = time.monotonic()
                if on_send is not None:
                    on_send()
                try:
                    response = await self._client.post(
                        self.url,
                        content=body,
                        headers=signed_headers(self._secret, webhook_id, body),
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = None
            on_attempt(webhook_id, status, time.monotonic() - started)
            if status == 200:
                return True
        return False

    async def aclose(self) -> None:
        await self._client.aclose()


class SenderThread:
    """A `WebhookSender` on an event loop of its own, in a thread of its own.

    For benchmarks: OpenAI does not hold a call's webhook behind the media of thousands of
    other calls, but one event loop playing both does (measured: with 2,000 chatty calls
    on 2 cores, webhooks waited ~20 s in the simulator, and their calls rang out there).
    The attempt callbacks run on the caller's loop, as with `WebhookSender`.
    """

    def __init__(self, url: str, secret: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhooks", daemon=True)
        self._thread.start()
        self._sender = asyncio.run_coroutine_threadsafe(
            self._make(url, secret, options), self._loop
        ).result()

    @staticmethod
    async def _make(url: str, secret: str, options: dict[str, Any]) -> WebhookSender:
        return WebhookSender(url, secret, **options)  # its HTTP client belongs to this loop

    async def deliver(
        self,
        webhook_id: str,
        body: bytes,
        on_attempt: AttemptHook,
        on_send: Callable[[], None] | None = None,
    ) -> bool:
        caller = asyncio.get_running_loop()

        def attempted(wid: str, status: int | None, latency: float) -> None:
            caller.call_soon_threadsafe(on_attempt, wid, status, latency)

        def sent() -> None:
            if on_send is not None:
                caller.call_soon_threadsafe(on_send)

        delivery = self._sender.deliver(webhook_id, body, attempted, sent)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(delivery, self._loop))

    async def aclose(self) -> None:
        closing = asyncio.run_coroutine_threadsafe(self._sender.aclose(), self._loop)
        await asyncio.wrap_future(closing)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop.close()
