"""The ingress HTTP app: the webhook route (and the control API, as extra routes) on one port.

A webhook is answered 200 only once JetStream has acknowledged it: a 200 tells OpenAI to
stop retrying, so it must mean "durable". Anything else is an honest error that OpenAI
will retry (503) or that no retry can fix (400, 401, 413).

| status | body | when |
|---|---|---|
| 200 | `{"status": "published"}` | new webhook, durable in JetStream |
| 200 | `{"status": "duplicate"}` | this webhook id was already durable |
| 200 | `{"status": "ignored"}` | a verified event of a type we do not handle (not a SIP call) |
| 400 | `{"error": …}` | signed, but malformed JSON, no/invalid call_id or webhook-id |
| 401 | `{"error": reason}` | missing_headers, bad_signature, bad_timestamp, stale, future |
| 408 | `{"error": "body not received in time"}` | body slower than `BODY_TIMEOUT_S` |
| 413 | `{"error": "payload too large"}` | body over the cap, refused while read |
| 503 | `{"error": …}` | NATS not connected, slow (> 1 s) or refusing |
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.ingress.bodies import BodyRefused, read_capped
from services.ingress.publish import CallPublisher
from services.ingress.webhook import Webhook, WebhookRefused, WebhookVerifier
from shared import metrics
from shared.logging import bound, clean

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/voice/realtime-webhook"
PUBLISH_TIMEOUT_S = 1.0


class WebhookEndpoint:
    """`POST /api/voice/realtime-webhook`: cap, verify, parse, make durable, answer.

    `publisher` returns the call publisher while NATS is connected and None otherwise, so
    an outage answers 503 at once instead of queueing publishes in the client's buffer.
    """

    def __init__(
        self,
        verifier: WebhookVerifier,
        publisher: Callable[[], CallPublisher | None],
        max_bytes: int,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._verifier = verifier
        self._publisher = publisher
        self._max_bytes = max_bytes
        self._publish_timeout_s = publish_timeout_s

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
            raw = await read_capped(request, self._max_bytes)
        except BodyRefused as refused:
            outcome = "too_large" if refused.status == 413 else "bad_request"
            return _refuse(refused.status, outcome, refused.reason)
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
            return _answer("ignored")
        with bound(call_id=webhook.call.call_id, webhook_id=webhook.webhook_id):
            return await self._publish(webhook)

    async def _publish(self, webhook: Webhook) -> Response:
        assert webhook.call is not None
        publisher = self._publisher()
        if publisher is None:
            return _refuse(503, "unavailable", "event store unavailable")
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                outcome = await publisher.publish(webhook.call)
        except Exception as error:  # NATS down, slow or refusing: OpenAI will retry
            log.warning("webhook not made durable: %s", type(error).__name__)
            return _refuse(503, "unavailable", "event store unavailable")
        metrics.WEBHOOKS.labels(outcome.value).inc()
        # One line per call comes from the acceptor; here only at debug, as this is the
        # busiest line of the system (measured: ~7% of the ingress' CPU at INFO).
        log.debug("webhook %s", outcome.value)
        return _answer(outcome.value)


_ANSWERS = {
    status: b'{"status":"%s"}' % status.encode() for status in ("published", "duplicate", "ignored")
}


def _answer(status: str) -> Response:
    """A 200 with a body rendered once, not per request."""
    return Response(_ANSWERS[status], media_type="application/json")


def _refuse(status: int, outcome: str, reason: str) -> Response:
    metrics.WEBHOOKS.labels(outcome).inc()
    return JSONResponse({"error": reason}, status_code=status)


def webhook_routes(endpoint: WebhookEndpoint) -> list[BaseRoute]:
    return [Route(WEBHOOK_PATH, endpoint.handle, methods=["POST"])]


def build_app(endpoint: WebhookEndpoint, extra_routes: Sequence[BaseRoute]) -> Starlette:
    """The ingress app; `extra_routes` are the ops routes and the control API."""
    return Starlette(routes=[*webhook_routes(endpoint), *extra_routes])
