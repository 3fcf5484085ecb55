"""The operator control API on the ingress: see live calls, hang up, transfer, instruct.

Live calls are read from the `call_leases` KV bucket (a key per owned call, holding the
worker and attempt), never from one process's memory, so any ingress replica sees every
call on every worker. Commands go as NATS requests to `calls.control.<call_id>`, which only
the worker owning the call answers, wherever the call has moved.

Every route needs `Authorization: Bearer $SWITCHBOARD_CONTROL_TOKEN` (compared in constant
time); without the variable the routes do not exist (404). A refused request (401, 404)
does nothing; a command no worker answers is a 503 (nobody listening) or 504 (no answer).
A `call_id` outside the one rule (`shared.ids`) is a 404 with its reason before anything
is looked up; bodies are capped while read; NATS failing mid-request is a 503. Every
answer, whatever it is, is counted in `switchboard_control_requests_total`.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.ingress.bodies import BodyRefused, read_capped
from shared import metrics
from shared.control import ControlCommand, ControlReply, control_subject
from shared.events import CALL_EVENTS_STREAM, journal_subject
from shared.ids import is_call_id
from shared.kv_keys import live_keys
from shared.leases import LeaseValue
from shared.streams import CALL_LEASES_BUCKET

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0
MAX_BODY_BYTES = 16 * 1024


class TransferBody(BaseModel):
    target: str = Field(min_length=1, max_length=256)


class SayBody(BaseModel):
    instructions: str = Field(min_length=1, max_length=4000)


class LiveCall(BaseModel):
    call_id: str
    worker: str
    attempt: int
    last_event: dict[str, Any] | None = None


class ControlApi:
    def __init__(self, token: SecretStr, nc: Callable[[], Client | None]) -> None:
        self._token = f"Bearer {token.get_secret_value()}".encode()
        self._nc = nc

    def routes(self) -> list[Route]:
        return [
            Route("/calls", _guarded("list", self.list_calls), methods=["GET"]),
            Route("/calls/{call_id}", _guarded("get", self.get_call), methods=["GET"]),
            Route("/calls/{call_id}/hangup", _guarded("hangup", self.hangup), methods=["POST"]),
            Route(
                "/calls/{call_id}/transfer", _guarded("transfer", self.transfer), methods=["POST"]
            ),
            Route("/calls/{call_id}/say", _guarded("say", self.say), methods=["POST"]),
        ]

    # -- routes ------------------------------------------------------------------------------

    async def list_calls(self, request: Request) -> Response:
        refused = self._refuse(request, "list")
        if refused is not None:
            return refused
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _answer("list", 503, {"error": "not connected"})
        calls = []
        leases = await _leases(nc)  # one bucket lookup for the whole list
        for call_id in await live_keys(nc.jetstream(), CALL_LEASES_BUCKET):
            call = await _lease(leases, call_id)
            if call is not None:
                calls.append(call.model_dump(exclude_none=True))
        return _answer("list", 200, {"calls": calls})

    async def get_call(self, request: Request) -> Response:
        refused = self._refuse(request, "get")
        if refused is not None:
            return refused
        if not is_call_id(request.path_params["call_id"]):
            return _not_a_call_id("get")
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _answer("get", 503, {"error": "not connected"})
        call = await _lease(await _leases(nc), request.path_params["call_id"])
        if call is None:
            return _answer("get", 404, {"error": "no such live call"})
        try:
            last = await nc.jetstream().get_last_msg(
                CALL_EVENTS_STREAM, journal_subject(call.call_id)
            )
            event = json.loads(last.data or b"{}")
            call.last_event = {k: event.get(k) for k in ("type", "seq", "ts")}
        except NotFoundError:
            pass
        return _answer("get", 200, call.model_dump(exclude_none=True))

    async def hangup(self, request: Request) -> Response:
        return await self._command(request, "hangup", None)

    async def transfer(self, request: Request) -> Response:
        return await self._command(request, "transfer", TransferBody)

    async def say(self, request: Request) -> Response:
        return await self._command(request, "say", SayBody)

    # -- parts ---------------------------------------------------------------------------

    def _refuse(self, request: Request, action: str) -> Response | None:
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, self._token):
            return None
        return _answer(
            action, 401, {"error": "unauthorized"}, headers={"WWW-Authenticate": "Bearer"}
        )

    async def _command(
        self, request: Request, action: str, body_model: type[BaseModel] | None
    ) -> Response:
        refused = self._refuse(request, action)
        if refused is not None:
            return refused
        if not is_call_id(request.path_params["call_id"]):
            return _not_a_call_id(action)
        raw = b""
        if body_model is not None:
            try:
                raw = await read_capped(request, MAX_BODY_BYTES)
            except BodyRefused as too_much:
                return _answer(action, too_much.status, {"error": too_much.reason})
            except ClientDisconnect:
                return _answer(action, 400, {"error": "client disconnected"})
        return await self.command(request.path_params["call_id"], action, body_model, raw)

    async def command(
        self, call_id: str, action: str, body_model: type[BaseModel] | None, raw: bytes
    ) -> Response:
        """Send one command to the call's owner; the caller has already authorised it (the
        bearer token here, the console's session and CSRF token there) and read the body
        within `MAX_BODY_BYTES` (`services/ingress/bodies.py`)."""
        if not is_call_id(call_id):
            return _not_a_call_id(action)
        command: dict[str, Any] = {"action": action}
        if body_model is not None:
            if len(raw) > MAX_BODY_BYTES:
                return _answer(action, 413, {"error": "payload too large"})
            try:
                command.update(body_model.model_validate_json(raw).model_dump())
            except ValidationError as error:
                problems = [
                    {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                    for e in error.errors()
                ]
                return _answer(action, 422, {"error": "invalid body", "details": problems})
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _answer(action, 503, {"error": "not connected"})
        if await _lease(await _leases(nc), call_id) is None:
            return _answer(action, 404, {"error": "no such live call"})
        payload = ControlCommand.model_validate(command).model_dump_json().encode()
        try:
            msg = await nc.request(control_subject(call_id), payload, timeout=COMMAND_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            return _answer(action, 503, {"error": "no worker holds the call right now"})
        except nats.errors.TimeoutError:
            return _answer(action, 504, {"error": "the worker did not answer in time"})
        try:
            reply = ControlReply.model_validate_json(msg.data)
        except ValidationError:
            return _answer(action, 502, {"error": "malformed answer from the worker"})
        body = reply.model_dump(exclude_none=True)
        if reply.ok:
            return _answer(action, 200, body)
        return _answer(action, 422 if reply.status == "refused" else 502, body)


async def _leases(nc: Client) -> KeyValue:
    return await nc.jetstream().key_value(CALL_LEASES_BUCKET)


async def _lease(leases: KeyValue, call_id: str) -> LiveCall | None:
    if not is_call_id(call_id):  # a key KV would refuse (or another bucket's)
        return None
    try:
        entry = await leases.get(call_id)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    value = LeaseValue.decode(entry.value)
    if value is None:
        return None
    return LiveCall(call_id=call_id, worker=value.worker, attempt=value.attempt)


def _answer(
    action: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    metrics.CONTROL_REQUESTS.labels(action, str(status)).inc()
    return JSONResponse(body, status_code=status, headers=headers)


def _not_a_call_id(action: str) -> Response:
    return _answer(action, 404, {"error": "no such live call", "reason": "not a valid call id"})


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(action: str, handler: Handler) -> Handler:
    """`handler`, with NATS failing mid-request answered 503 and anything unforeseen 500,
    each counted like every other answer (an uncounted 500 hides from the dashboards)."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (nats.errors.Error, TimeoutError) as error:
            log.warning("control %s: nats failed (%s)", action, type(error).__name__)
            return _answer(action, 503, {"error": "event store unavailable"})
        except Exception:
            log.exception("control %s failed", action)
            return _answer(action, 500, {"error": "internal error"})

    return guarded


def control_routes(token: SecretStr | None, nc: Callable[[], Client | None]) -> list[Route]:
    """The control API's routes; none (so 404) when no token is configured."""
    if token is None or not token.get_secret_value():
        return []
    return ControlApi(token, nc).routes()
