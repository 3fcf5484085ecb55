"""Which profile answers: the dialled number, then what a hook reply may change. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.acceptor.hook import ResolveReply, apply_reply, resolve_request
from shared.agent_directory import AgentDirectory, OverrideRefused, apply_override
from shared.agents import AgentLimits, AgentProfile
from shared.calls import IncomingCall, SipHeader


def profile(name: str, *numbers: str, **fields: object) -> AgentProfile:
    return AgentProfile.model_validate(
        {
            "name": name,
            "numbers": list(numbers),
            "model": "gpt-realtime-2.1",
            "voice": "marin",
            "instructions": f"You are {name}.",
            "greeting": f"{name} here.",
            **fields,
        }
    )


DEFAULT = profile("default")
SALON = profile("salon", "+61468002102", limits={"max_concurrent_calls": 2})
SUPPORT = profile("support", "+18005551212")
DIRECTORY = AgentDirectory.build(DEFAULT, [SALON, SUPPORT])


@pytest.mark.parametrize(
    ("to", "agent"),
    [
        ("sip:+61468002102@sip.twilio.com", "salon"),
        ("<sip:+61 468 002 102@sip.twilio.com>;tag=9", "salon"),
        ("tel:+1-800-555-1212", "support"),
        ("sip:+19998887777@sip.twilio.com", "default"),
        ("sip:reception@sip.twilio.com", "default"),
        (None, "default"),
    ],
)
def test_the_dialled_number_picks_the_profile(to: str | None, agent: str) -> None:
    assert DIRECTORY.for_to_header(to).name == agent


def test_an_override_replaces_fields_and_keeps_the_rest() -> None:
    changed = apply_override(SALON, {"instructions": "Greet Ana by name.", "voice": "cedar"})
    assert (changed.instructions, changed.voice) == ("Greet Ana by name.", "cedar")
    assert changed.name == "salon" and changed.limits == SALON.limits


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"name": "other"}, "override of name is not allowed"),
        ({"numbers": []}, "override of numbers is not allowed"),
        ({"turn_detection": {"type": "server_vad", "threshold": 0.4}}, "threshold"),
        ({"transcription": {"model": "x", "format": "pcm16"}}, "SDP"),
        ({"limits": {"max_concurrent_calls": 0}}, "greater than or equal to 1"),
    ],
)
def test_an_override_openai_would_refuse_is_refused(override: dict, reason: str) -> None:
    with pytest.raises(OverrideRefused, match=reason):
        apply_override(SALON, override)


def test_a_reply_picks_a_profile_by_name_then_overrides_it() -> None:
    reply = ResolveReply(agent="support", override={"greeting": "Hi again, Ana."})
    chosen = apply_reply(DIRECTORY, SALON, reply)
    assert chosen.name == "support" and chosen.greeting == "Hi again, Ana."
    assert apply_reply(DIRECTORY, SALON, ResolveReply()) is SALON


@pytest.mark.parametrize("reply", [ResolveReply(agent="nobody"), ResolveReply(error="crm down")])
def test_a_reply_naming_no_profile_or_an_error_is_refused(reply: ResolveReply) -> None:
    with pytest.raises(OverrideRefused):
        apply_reply(DIRECTORY, SALON, reply)


def test_the_request_carries_the_headers_and_the_static_choice() -> None:
    call = IncomingCall(
        webhook_id="wh_1",
        call_id="rtc_1",
        received_at=datetime.now(UTC),
        sip_headers=[
            SipHeader(name="From", value="sip:+14155550123@x"),
            SipHeader(name="To", value="<sip:+61468002102@x>;tag=1"),
        ],
    )
    request = resolve_request(call, SALON).model_dump(by_alias=True)
    assert request["from"] == "sip:+14155550123@x"
    assert request["number"] == "+61468002102"
    assert request["agent"] == "salon"
    assert [h["name"] for h in request["sip_headers"]] == ["From", "To"]


def test_limits_default_to_none() -> None:
    assert AgentLimits().max_concurrent_calls is None
