"""Post-call webhook subscriptions on the control API: create, list, delete, rotate, replay.

- `POST /webhooks` `{"url", "events"?, "agents"?, "secret"?}` → 201 `{"id", "secret", …}`;
  the secret is shown this once (generated when not given).
- `GET /webhooks` → `{"webhooks": [{"id", "url", "events", "agents", "created_at",
  "source", "disabled"}]}`; `GET /webhooks/{id}` → one, or 404.
- `DELETE /webhooks/{id}` → 200, and what still waited for it is dropped (409 for an
  endpoint of the webhooks file: it is removed there).
- `POST /webhooks/{id}/rotate` `{"secret"?}` → `{"id", "secret"}`; the old secret also
  signs for 24 h, so receivers can switch without losing a delivery.
- `POST /webhooks/{id}/replay` `{"call_id", "seq"?}` or `{"since", "until"?}` → 202
  `{"queued": n}`: the events it wants (of a call, one event of it, or a time range),
  sent again with the same `webhook-id`s.

The endpoints live in KV (`shared/endpoints.py`); the post-call service delivers. A URL
must be `https://` to a public address unless `SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE=1`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import Header
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.ingress.bearer import Bearer
from shared import metrics
from shared.endpoints import (
    EVENT_TYPE,
    Endpoint,
    EndpointStore,
    new_endpoint_id,
    new_secret,
    now_utc,
    valid_secret,
    wants_event,
)
from shared.events import CALL_EVENTS_STREAM, CALL_JOURNAL_SUBJECT, CallEvent, journal_subject
from shared.ids import is_call_id
from shared.postcall import OUTBOX_STREAM, drop_endpoint_queue, outbox_subject
from shared.scan import scan
from shared.url_safety import UnsafeUrl, check_url

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_REPLAY_EVENTS = 100_000


def _check_secret(secret: SecretStr | None) -> SecretStr | None:
    if secret is not None and not valid_secret(secret.get_secret_value()):
        raise ValueError("a secret is whsec_ and at least 16 bytes in base64")
    return secret


class NewEndpoint(BaseModel):
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(default_factory=lambda: ["call.report"], min_length=1, max_length=64)
    agents: list[str] | None = Field(None, max_length=256)
    secret: SecretStr | None = None

    model_config = {"extra": "forbid"}

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        if bad := [t for t in events if not EVENT_TYPE.match(t)]:
            raise ValueError(f"not an event type: {bad[0][:64]!r}")
        return list(dict.fromkeys(events))

    _secret = field_validator("secret")(lambda secret: _check_secret(secret))


class Rotation(BaseModel):
    secret: SecretStr | None = None

    model_config = {"extra": "forbid"}

    _secret = field_validator("secret")(lambda secret: _check_secret(secret))


class Replay(BaseModel):
    call_id: str | None = Field(None, min_length=1, max_length=128)
    seq: int | None = Field(None, ge=1)  # with call_id: that one event
    since: datetime | None = None
    until: datetime | None = None

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _one_kind(self) -> Replay:
        if self.call_id is not None and not is_call_id(self.call_id):
            raise ValueError("not a call id")
        if (self.call_id is None) == (self.since is None):
            raise ValueError('give either "call_id" or "since" (and optionally "until")')
        if self.seq is not None and self.call_id is None:
            raise ValueError('"seq" goes with "call_id"')
        if self.since and self.until and self.until <= self.since:
            raise ValueError('"until" must be after "since"')
        return self


class WebhooksApi:
    def __init__(
        self, token: SecretStr, nc: Callable[[], Client | None], *, allow_private: bool
    ) -> None:
        self._bearer = Bearer(token)
        self._nc = nc
        self._allow_private = allow_private

    def routes(self) -> list[Route]:
        return [
            Route("/webhooks", self.create, methods=["POST"]),
            Route("/webhooks", self.list, methods=["GET"]),
            Route("/webhooks/{endpoint_id}", self.get, methods=["GET"]),
            Route("/webhooks/{endpoint_id}", self.delete, methods=["DELETE"]),
            Route("/webhooks/{endpoint_id}/rotate", self.rotate, methods=["POST"]),
            Route("/webhooks/{endpoint_id}/replay", self.replay, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            body = await _body(request, NewEndpoint)
            if isinstance(body, Response):
                return body
            try:
                url = check_url(body.url, allow_private=self._allow_private)
            except UnsafeUrl as error:
                return _invalid("url", str(error))
            secret = body.secret.get_secret_value() if body.secret else new_secret()
            endpoint = Endpoint(
                id=new_endpoint_id(), url=url, events=body.events, agents=body.agents,
                secret=SecretStr(secret), created_at=now_utc(),
            )  # fmt: skip
            await store.put(endpoint)
            log.info("webhook endpoint %s created", endpoint.id)
            return JSONResponse({**endpoint.public(), "secret": secret}, status_code=201)

        return await self._run(request, "webhooks_create", handle)

    async def list(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            return JSONResponse({"webhooks": [e.public() for e in await store.all()]})

        return await self._run(request, "webhooks_list", handle)

    async def get(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            endpoint = await store.get(request.path_params["endpoint_id"])
            if endpoint is None:
                return _not_found()
            return JSONResponse(endpoint.public())

        return await self._run(request, "webhooks_get", handle)

    async def delete(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            endpoint = await store.get(request.path_params["endpoint_id"])
            if endpoint is None:
                return _not_found()
            if endpoint.source == "file":
                return JSONResponse(
                    {"error": "defined in SWITCHBOARD_WEBHOOKS_FILE; remove it there"},
                    status_code=409,
                )
            await store.delete(endpoint.id)
            await drop_endpoint_queue(js, endpoint.id)
            log.info("webhook endpoint %s deleted", endpoint.id)
            return JSONResponse({"id": endpoint.id, "deleted": True})

        return await self._run(request, "webhooks_delete", handle)

    async def rotate(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            body = await _body(request, Rotation, empty_ok=True)
            if isinstance(body, Response):
                return body
            endpoint = await store.get(request.path_params["endpoint_id"])
            if endpoint is None:
                return _not_found()
            if endpoint.source == "file":
                return JSONResponse(
                    {"error": "its secret comes from the webhooks file"}, status_code=409
                )
            secret = body.secret.get_secret_value() if body.secret else new_secret()
            await store.put(endpoint.rotated(secret, now_utc()))
            log.info("webhook endpoint %s secret rotated", endpoint.id)
            return JSONResponse({"id": endpoint.id, "secret": secret})

        return await self._run(request, "webhooks_rotate", handle)

    async def replay(self, request: Request) -> Response:
        async def handle(js: JetStreamContext, store: EndpointStore) -> Response:
            body = await _body(request, Replay)
            if isinstance(body, Response):
                return body
            endpoint = await store.get(request.path_params["endpoint_id"])
            if endpoint is None:
                return _not_found()
            if endpoint.disabled is not None:
                return JSONResponse(
                    {"error": f"endpoint disabled ({endpoint.disabled})"}, status_code=409
                )
            queued = await _replay(js, endpoint, body)
            if queued is None:
                return JSONResponse({"error": "no such event"}, status_code=404)
            log.info("replay of %d events queued for endpoint %s", queued, endpoint.id)
            return JSONResponse({"queued": queued}, status_code=202)

        return await self._run(request, "webhooks_replay", handle)

    async def _run(
        self,
        request: Request,
        action: str,
        handle: Callable[[JetStreamContext, EndpointStore], Any],
    ) -> Response:
        response = self._bearer.refuse(request)
        if response is None:
            nc = self._nc()
            if nc is None or not nc.is_connected:
                response = JSONResponse({"error": "not connected"}, status_code=503)
            else:
                js = nc.jetstream()
                response = await handle(js, await EndpointStore.open(js))
        metrics.CONTROL_REQUESTS.labels(action, str(response.status_code)).inc()
        return response


async def _replay(js: JetStreamContext, endpoint: Endpoint, replay: Replay) -> int | None:
    """Queue again the events the endpoint wants; None when the call (or its event `seq`)
    does not exist."""
    replay_id = uuid.uuid4().hex
    agents: dict[str, str | None] = {}
    queued = 0
    if replay.call_id is not None:
        messages = scan(js, CALL_EVENTS_STREAM, journal_subject(replay.call_id))
    else:
        messages = scan(
            js, CALL_EVENTS_STREAM, f"{CALL_JOURNAL_SUBJECT}.>", start_time=replay.since
        )
    seen = 0
    async for msg in messages:
        if replay.until is not None and msg.metadata.timestamp >= replay.until:
            break
        event = CallEvent.model_validate_json(msg.data)
        if replay.seq is not None and event.seq != replay.seq:
            continue
        seen += 1
        agent = event.data.get("agent")
        if isinstance(agent, str):
            agents.setdefault(event.call_id, agent)
        if endpoint.agents is not None and event.call_id not in agents:
            agents[event.call_id] = await _agent_of(js, event.call_id)
        if not wants_event(endpoint, event.type, agents.get(event.call_id)):
            continue
        await js.publish(
            outbox_subject(endpoint.id), msg.data, stream=OUTBOX_STREAM,
            headers={Header.MSG_ID.value: f"replay:{replay_id}:{event.call_id}:{event.seq}"},
        )  # fmt: skip
        queued += 1
        if queued >= MAX_REPLAY_EVENTS:
            break
    if replay.call_id is not None and seen == 0:
        return None
    return queued


async def _agent_of(js: JetStreamContext, call_id: str) -> str | None:
    async for msg in scan(js, CALL_EVENTS_STREAM, journal_subject(call_id)):
        agent = CallEvent.model_validate_json(msg.data).data.get("agent")
        if isinstance(agent, str):
            return agent
    return None


async def _body(request: Request, model: type[BaseModel], *, empty_ok: bool = False) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return JSONResponse({"error": "body too large"}, status_code=413)
    if empty_ok and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        details = [
            {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in error.errors()
        ]
        return JSONResponse({"error": "invalid body", "details": details}, status_code=422)


def _invalid(field: str, problem: str) -> Response:
    return JSONResponse(
        {"error": "invalid body", "details": [{"field": field, "problem": problem}]},
        status_code=422,
    )


def _not_found() -> Response:
    return JSONResponse({"error": "no such webhook endpoint"}, status_code=404)


def webhooks_routes(
    token: SecretStr | None, nc: Callable[[], Client | None], *, allow_private: bool
) -> list[Route]:
    """The routes; none (so 404) when no control token is configured."""
    if token is None or not token.get_secret_value():
        return []
    return WebhooksApi(token, nc, allow_private=allow_private).routes()
