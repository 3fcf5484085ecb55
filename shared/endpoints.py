"""Webhook endpoints (subscriptions): what they want, and where they are kept.

An endpoint is a URL, the event types it wants (`call.report` by default, `*` for all),
the agents it wants (`None`: every agent) and its signing secrets. Endpoints live in the
KV bucket `webhook_endpoints`, written by the control API (`POST /webhooks`) and by the
post-call service from `SWITCHBOARD_WEBHOOKS_FILE`; every replica of every service reads
the same set. Secrets stay in that bucket: the API shows a secret once, when it is made,
and never lists it; nothing logs it.

Which endpoints want an event is a pure decision (`wants`), tested without servers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Literal

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, SecretStr, field_validator

from shared.kv_keys import live_keys
from shared.postcall import ENDPOINTS_BUCKET

EVENT_TYPE = re.compile(r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)*)$")
ENDPOINT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALL_EVENTS = "*"
ROTATION_OVERLAP = timedelta(hours=24)  # a replaced secret still signs this long


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(8)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def valid_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 16
    except ValueError:
        return False


class Endpoint(BaseModel):
    """One subscription, as stored in KV (with its secrets)."""

    id: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["call.report"])
    agents: list[str] | None = None
    secret: SecretStr
    # The secret before the last rotation, still used to sign until `previous_until`.
    previous_secret: SecretStr | None = None
    previous_until: datetime | None = None
    created_at: datetime
    source: Literal["api", "file"] = "api"
    disabled: str | None = None  # why deliveries stopped (e.g. "gone": the receiver said 410)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ENDPOINT_ID.match(value):
            raise ValueError("id: 1-64 letters, digits, '-' or '_'")
        return value

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with now: two during a rotation's overlap, one otherwise."""
        current = [self.secret.get_secret_value()]
        if self.previous_secret is not None and self.previous_until and now < self.previous_until:
            return [*current, self.previous_secret.get_secret_value()]
        return current

    def rotated(self, secret: str, now: datetime) -> Endpoint:
        return self.model_copy(
            update={
                "secret": SecretStr(secret),
                "previous_secret": self.secret,
                "previous_until": now + ROTATION_OVERLAP,
            }
        )

    def public(self) -> dict[str, object]:
        """What the API shows: everything but the secrets."""
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "agents": self.agents,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "disabled": self.disabled,
        }

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json")
        data["secret"] = self.secret.get_secret_value()
        if self.previous_secret is not None:
            data["previous_secret"] = self.previous_secret.get_secret_value()
        return json.dumps(data).encode()


def wants_event(endpoint: Endpoint, event_type: str, agent: str | None) -> bool:
    """Is this event of a type, and from an agent, the endpoint asked for? Pure. An event
    whose agent is unknown goes only to endpoints of every agent."""
    if ALL_EVENTS not in endpoint.events and event_type not in endpoint.events:
        return False
    return endpoint.agents is None or (agent is not None and agent in endpoint.agents)


def wants(endpoint: Endpoint, event_type: str, agent: str | None, stored_at: datetime) -> bool:
    """Does this endpoint get this event as it happens? Pure.

    Only while enabled, and only events stored after the endpoint was made: a new
    subscription is not flooded with the retained past (`replay` is for that).
    """
    if endpoint.disabled is not None or stored_at < endpoint.created_at:
        return False
    return wants_event(endpoint, event_type, agent)


def now_utc() -> datetime:
    return datetime.now(UTC)


class EndpointStore:
    """The `webhook_endpoints` bucket, read and written whole entries at a time."""

    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> EndpointStore:
        return cls(js, await js.key_value(ENDPOINTS_BUCKET))

    async def put(self, endpoint: Endpoint) -> None:
        await self._kv.put(endpoint.id, endpoint.to_json())

    async def get(self, endpoint_id: str) -> Endpoint | None:
        if not ENDPOINT_ID.match(endpoint_id):
            return None
        try:
            entry = await self._kv.get(endpoint_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        return Endpoint.model_validate_json(entry.value)

    async def all(self) -> list[Endpoint]:
        found = [await self.get(key) for key in await live_keys(self._js, ENDPOINTS_BUCKET)]
        return [endpoint for endpoint in found if endpoint is not None]

    async def delete(self, endpoint_id: str) -> None:
        await self._kv.delete(endpoint_id)

    async def revision(self) -> int:
        """The bucket's last sequence: changes whenever any endpoint does."""
        return (await self._kv.status()).stream_info.state.last_seq
