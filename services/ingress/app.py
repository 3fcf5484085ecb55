"""The ingress HTTP app: the webhook route (and, later, the control API) on one port.

A webhook is answered 200 only once JetStream has acknowledged it: a 200 tells OpenAI to
stop retrying, so it must mean "durable". Anything else is an honest error that OpenAI
will retry (503) or that no retry can fix (400, 401, 413).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import Header
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.ingress.webhook import Webhook, WebhookRefused, WebhookVerifier
from shared import metrics
from shared.events import CallEventPublisher, EventType
from shared.logging import bound, clean
from shared.streams import INCOMING_CALL_SUBJECT, WEBHOOKS_STREAM

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/voice/realtime-webhook"
PUBLISH_TIMEOUT_S = 1.0


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused beyond `limit` bytes before anything is parsed."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


class WebhookEndpoint:
    def __init__(
        self,
        verifier: WebhookVerifier,
        js: Callable[[], JetStreamContext | None],
        events: Callable[[], CallEventPublisher | None],
        max_bytes: int,
    ) -> None:
        self._verifier = verifier
        self._js = js
        self._events = events
        self._max_bytes = max_bytes

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._handle(request)
        metrics.WEBHOOK_SECONDS.labels(str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    async def _handle(self, request: Request) -> Response:
        received_at = datetime.now(UTC)
        try:
            raw = await _read_capped(request, self._max_bytes)
        except _TooLarge:
            return _refuse(413, "too_large", "payload too large")
        except ClientDisconnect:
            return _refuse(400, "bad_request", "client disconnected")
        try:
            webhook = self._verifier.verify(raw, request.headers, received_at)
        except WebhookRefused as refused:
            if refused.status == 401:
                metrics.WEBHOOK_AUTH_FAILURES.labels(refused.reason).inc()
                return _refuse(401, "unauthorized", refused.reason)
            return _refuse(refused.status, "bad_request", refused.reason)
        if webhook.call is None:
            log.info("ignored webhook of type %s", clean(webhook.type, 64))
            metrics.WEBHOOKS.labels("ignored").inc()
            return JSONResponse({"status": "ignored"})
        with bound(call_id=webhook.call.call_id, webhook_id=clean(webhook.webhook_id, 64)):
            return await self._publish(webhook)

    async def _publish(self, webhook: Webhook) -> Response:
        assert webhook.call is not None
        js, events = self._js(), self._events()
        if js is None or events is None:
            return _refuse(503, "unavailable", "not connected")
        call = webhook.call
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                # call.received first, so it is the call's first event whatever the
                # acceptor does next; its msg id makes OpenAI's retries harmless.
                await events.publish(
                    call.call_id,
                    EventType.CALL_RECEIVED,
                    {
                        "webhook_id": webhook.webhook_id,
                        "sip_headers": call.model_dump()["sip_headers"],
                    },
                    msg_id=f"received:{call.call_id}",
                )
                ack = await js.publish(
                    INCOMING_CALL_SUBJECT,
                    call.model_dump_json().encode(),
                    stream=WEBHOOKS_STREAM,
                    headers={Header.MSG_ID.value: webhook.webhook_id},
                    timeout=PUBLISH_TIMEOUT_S,
                )
        except Exception as error:  # NATS down, slow or refusing: OpenAI will retry
            log.warning("webhook not made durable: %s", type(error).__name__)
            return _refuse(503, "unavailable", "event store unavailable")
        outcome = "duplicate" if ack.duplicate else "published"
        metrics.WEBHOOKS.labels(outcome).inc()
        log.info("webhook %s", outcome)
        return JSONResponse({"status": outcome})


def _refuse(status: int, outcome: str, reason: str) -> Response:
    metrics.WEBHOOKS.labels(outcome).inc()
    return JSONResponse({"error": reason}, status_code=status)


def webhook_routes(endpoint: WebhookEndpoint) -> list[Route]:
    return [Route(WEBHOOK_PATH, endpoint.handle, methods=["POST"])]


def build_app(endpoint: WebhookEndpoint, extra_routes: list) -> Starlette:
    return Starlette(routes=[*webhook_routes(endpoint), *extra_routes])
