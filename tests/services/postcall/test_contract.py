"""The post-call service's place in the documented contract: command, subjects, payloads."""

from __future__ import annotations

import yaml

from switchboard.asyncapi import document
from switchboard.cli import LONG_RUNNING_SERVICES, build_parser


def test_postcall_is_a_long_running_subcommand() -> None:
    assert "postcall" in LONG_RUNNING_SERVICES
    args = build_parser().parse_args(["postcall", "--metrics-port", "9104"])
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
