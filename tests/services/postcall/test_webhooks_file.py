"""Endpoints from `SWITCHBOARD_WEBHOOKS_FILE`: checked in full, synced to the bucket,
reloaded when the file changes, never touching the API's endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.postcall.endpoints_file import (
    WebhooksFile,
    WebhooksFileError,
    load_webhooks_file,
)
from shared.endpoints import EndpointStore, new_secret
from shared.postcall import declare_postcall_topology
from shared.streams import declare_topology

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SECRET, OLD = new_secret(), new_secret()
ENV = {"CRM_SECRET": SECRET, "ROTATING": f"{SECRET} {OLD}"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_good_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "webhooks.yaml", """
webhooks:
  - id: crm
    url: https://crm.example.com/hooks
    agents: [salon]
    secret_env: CRM_SECRET
  - id: tickets
    url: https://tickets.example.com/in
    events: ["call.report", "transfer.failed"]
    secret_env: ROTATING
""")  # fmt: skip
    crm, tickets = load_webhooks_file(path, ENV, allow_private=False, now=NOW)
    assert crm.events == ["call.report"] and crm.agents == ["salon"] and crm.source == "file"
    assert crm.signing_secrets(NOW) == [SECRET]
    assert tickets.signing_secrets(NOW) == [SECRET, OLD]  # both sign while rotating


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("url: https://127.0.0.1/x\n    secret_env: CRM_SECRET", "url: private"),
        ("url: http://crm.example.com\n    secret_env: CRM_SECRET", "url: url must be https"),
        ("url: https://crm.example.com\n    secret_env: NOT_SET", "secret_env: NOT_SET"),
        ("url: https://crm.example.com\n    secret: whsec_abc", "secret"),
        ("url: https://crm.example.com\n    secret_env: CRM_SECRET\n    events: [Bad!]", "events"),
    ],
)
def test_a_bad_file_says_where_and_why(tmp_path: Path, entry: str, problem: str) -> None:
    path = _write(tmp_path / "webhooks.yaml", f"webhooks:\n  - id: crm\n    {entry}\n")
    with pytest.raises(WebhooksFileError, match=problem) as refused:
        load_webhooks_file(path, ENV, allow_private=False, now=NOW)
    assert "webhooks[1]" in str(refused.value)
    assert SECRET not in str(refused.value)


async def test_the_file_is_synced_and_reloaded(
    tmp_path: Path, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    js = nc.jetstream()
    await declare_topology(js)
    await declare_postcall_topology(js)
    store = await EndpointStore.open(js)
    path = _write(tmp_path / "webhooks.yaml", """
webhooks:
  - {id: crm, url: "https://crm.example.com/a", secret_env: CRM_SECRET}
  - {id: old, url: "https://old.example.com/a", secret_env: CRM_SECRET}
""")  # fmt: skip
    watcher = WebhooksFile(path, store, js, allow_private=False)
    assert await watcher.sync_if_changed()
    assert {e.id for e in await store.all()} == {"crm", "old"}
    created = (await store.get("crm")).created_at  # type: ignore[union-attr]

    assert not await watcher.sync_if_changed()  # unchanged: nothing to do
    _write(path, 'webhooks:\n  - {id: crm, url: "https://crm.example.com/a", '
                 'secret_env: CRM_SECRET, events: ["*"]}\n')  # fmt: skip
    assert await watcher.sync_if_changed()
    crm = await store.get("crm")
    assert crm is not None and crm.events == ["*"] and crm.created_at == created
    assert await store.get("old") is None

    _write(path, "webhooks: [oops")
    assert not await watcher.sync_if_changed()  # a bad edit keeps what was there
    assert watcher.last_error is not None and await store.get("crm") is not None
