"""The pure decisions behind tools, transfers and turn-taking: no servers needed."""

from __future__ import annotations

import pytest

from services.session.telephony import (
    TransferRefused,
    TransferTarget,
    is_dialable,
    resolve_model_target,
    resolve_operator_target,
)
from services.session.tools import (
    ToolResult,
    ToolRun,
    judge_existing,
    parse_arguments,
    parse_reply,
    run_key,
)
from shared.agents import AgentProfile, BuiltinTool


def agent(*tools: BuiltinTool) -> AgentProfile:
    return AgentProfile(
        name="salon", model="m", voice="v", instructions="i", greeting="g", tools=list(tools)
    )


TRANSFER = BuiltinTool(builtin="transfer_call", targets={"reception": "tel:+61290000000"})


def test_replies_from_tool_services() -> None:
    assert parse_reply(b'{"output": {"free": ["10:00"]}}') == ToolResult(output={"free": ["10:00"]})
    assert parse_reply(b'{"output": null}') == ToolResult(output=None)
    assert parse_reply(b'{"error": "closed"}') == ToolResult(error="closed")
    assert parse_reply(b"<html>").error is not None
    assert parse_reply(b'{"result": 1}').error is not None
    assert parse_reply(b"[1]").error is not None


def test_arguments_must_be_a_json_object() -> None:
    assert parse_arguments('{"day": "monday"}') == {"day": "monday"}
    assert parse_arguments("") == {}
    assert parse_arguments("[1]") is None
    assert parse_arguments("{oops") is None


def test_run_keys_are_safe_for_kv() -> None:
    assert run_key("rtc_abc", "call_1") == "rtc_abc.call_1"
    key = run_key("rtc_abc", "call with spaces.and>wildcards")
    assert key.startswith("rtc_abc.") and " " not in key and ">" not in key


def test_an_existing_run_is_replayed_waited_for_or_declared_interrupted() -> None:
    running = ToolRun(state="running", name="t", worker="w", started_at=100.0, deadline=108.0)
    done = running.model_copy(update={"state": "done", "result": {"output": 1}})
    assert judge_existing(done, now=10_000) == "replay"
    assert judge_existing(running, now=105) == "wait"
    assert judge_existing(running, now=109) == "wait"  # within the grace
    assert judge_existing(running, now=111) == "interrupted"


def test_the_model_picks_a_name_never_a_number() -> None:
    salon = agent(TRANSFER)
    assert resolve_model_target(salon, {"target": "reception"}) == TransferTarget(
        "reception", "tel:+61290000000"
    )
    raw = resolve_model_target(salon, {"target": "tel:+61299999999"})
    assert isinstance(raw, TransferRefused) and raw.reason == "unknown_target"
    assert "reception" in raw.message
    missing = resolve_model_target(salon, {})
    assert isinstance(missing, TransferRefused) and missing.reason == "unknown_target"
    off = resolve_model_target(agent(), {"target": "reception"})
    assert isinstance(off, TransferRefused) and off.reason == "not_allowed"


def test_an_operator_may_name_a_target_or_dial_a_uri() -> None:
    salon = agent(TRANSFER)
    assert resolve_operator_target(salon, "reception").uri == "tel:+61290000000"
    assert resolve_operator_target(salon, "tel:+14155550123").uri == "tel:+14155550123"
    assert resolve_operator_target(agent(), "sip:desk@example.com").uri == "sip:desk@example.com"
    assert isinstance(resolve_operator_target(salon, "+1415 then hang up"), TransferRefused)
    assert is_dialable("tel:+61 2 9000 0000")
    assert not is_dialable("http://example.com")


@pytest.mark.parametrize(
    "uri",
    [
        "sip:evil@attacker.example\n",  # issue 22, item 6: `$` matched before the newline
        "tel:+61290000000\n",
        "sip:desk@example.com\r",
        "sip:dé@example.com",
        "sip:<desk@example.com>",
        "sip:desk@example.com\u202e",
    ],
    ids=repr,
)
def test_a_target_is_dialable_only_whole_and_printable(uri: str) -> None:
    assert not is_dialable(uri)
    assert isinstance(resolve_operator_target(agent(), uri), TransferRefused)
