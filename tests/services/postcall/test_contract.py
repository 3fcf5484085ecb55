"""The post-call service's place in the documented contract: command, subjects, payloads."""

from __future__ import annotations

import yaml

from shared.settings import DEFAULT_METRICS_PORTS
from switchboard.asyncapi import document
from switchboard.cli import build_parser
from switchboard.services import SERVICES


def test_postcall_is_a_long_running_subcommand(monkeypatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert "postcall" in SERVICES
    assert DEFAULT_METRICS_PORTS["postcall"] == 9104
    args = build_parser().parse_args(["postcall"])
    assert (args.command, args.metrics_port) == ("postcall", 9104)


def test_its_subjects_and_payloads_are_in_the_asyncapi_document() -> None:
    doc = yaml.safe_load(document())
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses >= {
        "postcall.outbox.{endpoint_id}", "postcall.dead.{endpoint_id}", "calls.index.{call_id}",
    }  # fmt: skip
    schemas = doc["components"]["schemas"]
    assert {"DeadLetter", "CallSummary"} <= set(schemas)
    assert {"call_id", "started_at", "agent", "to", "from", "end_reason"} <= set(
        schemas["CallSummary"]["properties"]
    )
