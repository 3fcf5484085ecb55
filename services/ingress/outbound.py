"""`POST /calls` and `DELETE /calls/{call_id}`: ask for an outbound call, or cancel one.

A request is checked in full before anything is written (422 with the reason: `to` not
E.164, an unknown agent, an agent without an outbound trunk; nothing queued). Then, in
this order, each step safe to repeat: the Idempotency-Key is bound to a call id (KV
create in `outbound_keys`, kept for days, so the same key gets the same call id long
after JetStream's dedupe window), the call's record is created (`outbound_calls`,
`queued`), `call.requested` is published, and try 1 is queued (`Nats-Msg-Id`
`try:<call_id>:1`, subject `outbound.requests.<call_id>`). A retry after a crash at any
step finds what was done and finishes the rest; the dialler's claim on the record makes
sure a try is dialled once.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared import metrics
from shared.agents import AgentProfile
from shared.events import CallEventPublisher, EventType
from shared.ids import is_call_id
from shared.outbound import (
    OUTBOUND_CALLS_BUCKET,
    OUTBOUND_KEYS_BUCKET,
    CallRequest,
    KeyRecord,
    OutboundCall,
    key_id,
    new_call_id,
)
from shared.outbound_store import CallRecords, publish_try, try_pending

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_KEY_LENGTH = 255

AgentLookup = Callable[[str], AgentProfile | None]


class OutboundApi:
    def __init__(self, token: str, nc: Callable[[], Client | None], agents: AgentLookup) -> None:
        self._token = f"Bearer {token}".encode()
        self._nc = nc
        self._agents = agents
        self._events: tuple[Client, CallEventPublisher] | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/calls", self.request_call, methods=["POST"]),
            Route("/calls/{call_id}", self.cancel_call, methods=["DELETE"]),
        ]

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, self._token)

    def _publisher(self, nc: Client) -> CallEventPublisher:
        if self._events is None or self._events[0] is not nc:
            self._events = (nc, CallEventPublisher(nc.jetstream()))
        return self._events[1]

    async def request_call(self, request: Request) -> Response:
        if not self._authorized(request):
            return _answer("call", 401, {"error": "unauthorized"})
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > MAX_KEY_LENGTH:
            return _answer("call", 422, {"error": "an Idempotency-Key header is required"})
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _answer("call", 413, {"error": "body too large"})
        try:
            body = CallRequest.model_validate_json(raw)
        except ValidationError as error:
            problems = [
                {"field": ".".join(map(str, e["loc"])), "problem": _reason(e["msg"])}
                for e in error.errors()
            ]
            first = problems[0] if problems else {"field": "body", "problem": "invalid"}
            reason = f"{first['field'] or 'body'}: {first['problem']}"
            return _answer("call", 422, {"error": reason, "details": problems})
        agent = self._agents(body.agent)
        if agent is None:
            return _answer("call", 422, {"error": f"unknown agent {body.agent!r}"})
        if agent.outbound is None:
            return _answer(
                "call", 422, {"error": f"agent {body.agent!r} has no outbound trunk configured"}
            )
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _answer("call", 503, {"error": "not connected"})
        try:
            return await self._queue(nc, key, body)
        except Exception as error:  # NATS refusing or slow: nothing promised, retry is safe
            log.warning("call request not queued: %s", type(error).__name__)
            return _answer("call", 503, {"error": "event store unavailable"})

    async def _queue(self, nc: Client, key: str, body: CallRequest) -> Response:
        js = nc.jetstream()
        keys = await js.key_value(OUTBOUND_KEYS_BUCKET)
        records = CallRecords(await js.key_value(OUTBOUND_CALLS_BUCKET))
        bound = KeyRecord(call_id=new_call_id(), fingerprint=body.fingerprint())
        try:
            await keys.create(key_id(key), bound.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            entry = await keys.get(key_id(key))
            first = KeyRecord.model_validate_json(entry.value or b"{}")
            if first.fingerprint != bound.fingerprint:
                return _answer(
                    "call", 422,
                    {"error": "this Idempotency-Key was used for a different request"},
                )  # fmt: skip
            bound = first
        call_id = bound.call_id
        record = OutboundCall(
            call_id=call_id, to=body.to, agent=body.agent, context=body.context,
            created_at=time.time(),
        )  # fmt: skip
        created = await records.create(record)
        if not created:
            current = await records.get(call_id)
            record = current[0] if current else record
        await self._publisher(nc).publish(
            call_id,
            EventType.CALL_REQUESTED,
            {"to": body.to, "agent": body.agent, "api": "live", "direction": "outbound"},
            msg_id=f"requested:{call_id}",
        )
        # Try 1 is (re)queued unless it waits already: a dialler changes the record before it
        # lets go of a try, so a queued record with no try waiting lost its first publish.
        if record.state == "queued" and record.tries == 0 and not await try_pending(js, call_id):
            await publish_try(js, call_id, 1)
        return _answer("call", 202, {"call_id": call_id, "status": record.state})

    async def cancel_call(self, request: Request) -> Response:
        if not self._authorized(request):
            return _answer("cancel", 401, {"error": "unauthorized"})
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _answer("cancel", 503, {"error": "not connected"})
        call_id = request.path_params["call_id"]
        if not is_call_id(call_id):
            return _answer("cancel", 404, {"error": "no such outbound call"})
        records = CallRecords(await nc.jetstream().key_value(OUTBOUND_CALLS_BUCKET))
        try:
            current = await records.get(call_id)
        except KeyNotFoundError:
            current = None
        if current is None:
            return _answer("cancel", 404, {"error": "no such outbound call"})

        def cancel(record: OutboundCall) -> OutboundCall | None:
            if record.state not in ("queued", "dialing"):
                return None
            return record.model_copy(update={"state": "cancelled", "reason": "cancelled"})

        changed = await records.change(call_id, cancel)
        if changed is None:
            now = await records.get(call_id)
            state = now[0].state if now else "unknown"
            if state == "cancelled":
                return _answer("cancel", 202, {"call_id": call_id, "status": state})
            return _answer(
                "cancel", 409, {"error": f"the call is {state}: too late to cancel",
                                "status": state},
            )  # fmt: skip
        if current[0].state == "queued":  # never dialled (a ringing one: the dialler says)
            events = self._publisher(nc)
            await events.publish(
                call_id, EventType.CALL_FAILED, {"reason": "cancelled", "final": True},
                msg_id=f"cancelled:{call_id}",
            )  # fmt: skip
        return _answer("cancel", 202, {"call_id": call_id, "status": "cancelled"})


def _reason(message: str) -> str:
    return str(message).removeprefix("Value error, ")


def _answer(action: str, status: int, body: dict[str, Any]) -> Response:
    metrics.CONTROL_REQUESTS.labels(action, str(status)).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def outbound_routes(
    token: str | None, nc: Callable[[], Client | None], agents: AgentLookup
) -> list[Route]:
    """None (so 404/405) when the control API is off."""
    if not token:
        return []
    return OutboundApi(token, nc, agents).routes()
