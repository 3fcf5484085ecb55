"""The committed AsyncAPI document is the one the code generates, and covers every subject."""

from __future__ import annotations

import yaml

from switchboard.asyncapi import document
from tests.observability.prometheus import REPO

COMMITTED = REPO / "docs/asyncapi.yaml"


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED.read_text() == document(), (
        "docs/asyncapi.yaml is stale: python -m switchboard.asyncapi > docs/asyncapi.yaml"
    )


def test_every_subject_and_payload_is_documented() -> None:
    doc = yaml.safe_load(document())
    assert doc["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses >= {
        "webhooks.realtime.call.incoming",
        "sessions.jobs",
        "calls.events.{call_id}",
        "calls.journal.{call_id}",
        "tools.{name}",
        "agents.resolve",
        "calls.control.{call_id}",
    }
    schemas = doc["components"]["schemas"]
    for model in ("IncomingCall", "SessionJob", "CallEvent", "ToolRequest", "ToolReply",
                  "ResolveRequest", "ResolveReply", "ControlCommand", "ControlReply"):  # fmt: skip
        assert model in schemas, model
    assert set(schemas["CallEvent"]["properties"]) == {"type", "call_id", "seq", "ts", "data"}
    assert set(schemas["ToolRequest"]["properties"]) == {
        "call_id", "tool_call_id", "name", "arguments", "agent",
    }  # fmt: skip
