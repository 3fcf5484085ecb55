"""Endpoints from `SWITCHBOARD_WEBHOOKS_FILE`, kept in the endpoints bucket like API ones.

```yaml
webhooks:
  - id: crm                         # stable: webhook ids derive from it
    url: https://crm.example.com/hooks/switchboard
    events: [call.report]           # default [call.report]; "*" for every type
    agents: [salon]                 # optional; default every agent
    secret_env: CRM_WEBHOOK_SECRET  # whsec_…; two, space-separated, while rotating
```

The secret itself never sits in the file. The file is read at start-up and whenever it
changes (polled, like the agents file); a bad file changes nothing and the log says why.
Endpoints the file no longer lists are removed; endpoints made by the API are never
touched. An endpoint keeps its creation time (and so its place in the event stream)
across reloads unless its URL changes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import yaml
from nats.js import JetStreamContext
from pydantic import BaseModel, Field, SecretStr, ValidationError

from shared.endpoints import EVENT_TYPE, Endpoint, EndpointStore, now_utc, valid_secret
from shared.postcall import drop_endpoint_queue
from shared.url_safety import UnsafeUrl, check_url

log = logging.getLogger(__name__)

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


class WebhooksFileError(ValueError):
    pass


class _FileEndpoint(BaseModel):
    id: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["call.report"])
    agents: list[str] | None = None
    secret_env: str

    model_config = {"extra": "forbid"}


def load_webhooks_file(
    path: Path, env: Mapping[str, str], *, allow_private: bool, now: datetime
) -> list[Endpoint]:
    """The file's endpoints, checked in full; `WebhooksFileError` says what is wrong."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise WebhooksFileError(f"{path}: cannot read: {error}") from None
    entries = document.get("webhooks") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise WebhooksFileError(f"{path}: expected a top-level `webhooks:` list")
    endpoints: list[Endpoint] = []
    for number, raw in enumerate(entries, start=1):
        where = f"{path}: webhooks[{number}]"
        try:
            entry = _FileEndpoint.model_validate(raw)
            url = check_url(entry.url, allow_private=allow_private)
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(map(str, problem["loc"]))
            raise WebhooksFileError(f"{where}: {field}: {problem['msg']}") from None
        except UnsafeUrl as error:
            raise WebhooksFileError(f"{where}: url: {error}") from None
        if bad := [t for t in entry.events if not EVENT_TYPE.match(t)]:
            raise WebhooksFileError(f"{where}: events: not an event type: {bad[0]!r}")
        secrets = [s for s in re.split(r"[\s,]+", env.get(entry.secret_env, "")) if s]
        if not secrets or len(secrets) > 2 or not all(valid_secret(s) for s in secrets):
            raise WebhooksFileError(
                f"{where}: secret_env: {entry.secret_env} must hold one or two whsec_ secrets"
            )
        try:
            endpoints.append(
                Endpoint(
                    id=entry.id, url=url, events=entry.events, agents=entry.agents,
                    secret=SecretStr(secrets[0]),
                    previous_secret=SecretStr(secrets[1]) if len(secrets) > 1 else None,
                    previous_until=FOREVER if len(secrets) > 1 else None,
                    created_at=now, source="file",
                )
            )  # fmt: skip
        except ValidationError as error:
            raise WebhooksFileError(f"{where}: {error.errors()[0]['msg']}") from None
    ids = [e.id for e in endpoints]
    if len(ids) != len(set(ids)):
        raise WebhooksFileError(f"{path}: endpoint ids must be unique")
    return endpoints


async def sync_file_endpoints(
    js: JetStreamContext, store: EndpointStore, wanted: list[Endpoint]
) -> None:
    """Make the bucket's file endpoints exactly `wanted`, keeping what did not change."""
    existing = {e.id: e for e in await store.all()}
    for endpoint in wanted:
        old = existing.get(endpoint.id)
        if old is not None and old.source == "api":
            log.error("webhooks file: id %s is taken by an API endpoint; skipped", endpoint.id)
            continue
        if old is not None and old.url == endpoint.url:
            endpoint = endpoint.model_copy(
                update={"created_at": old.created_at, "disabled": old.disabled}
            )
        if old is None or old.to_json() != endpoint.to_json():
            await store.put(endpoint)
    keep = {e.id for e in wanted}
    for old in existing.values():
        if old.source == "file" and old.id not in keep:
            await store.delete(old.id)
            await drop_endpoint_queue(js, old.id)


class WebhooksFile:
    """Polls the file and syncs it when it changes."""

    def __init__(
        self, path: Path, store: EndpointStore, js: JetStreamContext, allow_private: bool
    ) -> None:
        self.path = path
        self._store = store
        self._js = js
        self._allow_private = allow_private
        self._seen: tuple[int, int, int] | None = None
        self.last_error: str | None = None

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    async def sync_if_changed(self, *, force: bool = False) -> bool:
        identity = self._identity()
        if identity == self._seen and not force:
            return False
        self._seen = identity
        try:
            endpoints = load_webhooks_file(
                self.path, os.environ, allow_private=self._allow_private, now=now_utc()
            )
        except WebhooksFileError as error:
            self.last_error = str(error)
            log.error("webhooks file not (re)loaded, keeping the endpoints as they are: %s", error)
            return False
        await sync_file_endpoints(self._js, self._store, endpoints)
        self.last_error = None
        log.info("webhooks file loaded: %d endpoints", len(endpoints))
        return True
