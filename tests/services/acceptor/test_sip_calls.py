"""Which API answers a SIP call that came with both webhooks: the pure choice."""

from __future__ import annotations

from datetime import UTC, datetime

from services.acceptor.sip_calls import choose, sip_call_key
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SipHeader


def agent(api: str, name: str = "a") -> AgentProfile:
    return AgentProfile(
        name=name, api=api, model="gpt-live-1" if api == "live" else "gpt-realtime-2.1",
        voice="marin", instructions="i", greeting="g",
    )  # fmt: skip


def incoming(api: str, call_id: str, sip_call_id: str | None = "c-1") -> IncomingCall:
    headers = [SipHeader(name="To", value="sip:+18005551212@x")]
    if sip_call_id is not None:
        headers.append(SipHeader(name="Call-ID", value=sip_call_id))
    return IncomingCall(
        webhook_id="wh", call_id=call_id, api=api, received_at=datetime.now(UTC),
        sip_headers=headers,
    )  # fmt: skip


def test_the_first_webhook_decides_for_the_agents_api_whichever_arrives_first() -> None:
    live, realtime = incoming("live", "live_1"), incoming("realtime", "rtc_1")
    for first, second in ((live, realtime), (realtime, live)):
        record, one = choose(None, first, agent("live"))
        assert record is not None and record["api"] == "live"
        updated, two = choose(record, second, agent("live"))
        answering = one if first.api == "live" else two
        superseded = two if first.api == "live" else one
        assert answering.answers and not superseded.answers
        assert updated is not None and updated["calls"] == {"live": "live_1", "realtime": "rtc_1"}
    # The superseded one names the answering call when that one came first.
    _, late = choose(choose(None, live, agent("live"))[0], realtime, agent("live"))
    assert late.superseded_data(realtime) == {
        "api": "realtime", "by_api": "live", "agent": "a", "by_call_id": "live_1",
    }  # fmt: skip


def test_the_record_wins_over_a_later_different_resolution() -> None:
    record, _ = choose(None, incoming("realtime", "rtc_1"), agent("realtime"))
    # A reload (or a hook) now names a Live agent: the SIP call still answers on Realtime.
    _, choice = choose(record, incoming("live", "live_1"), agent("live", "b"))
    assert not choice.answers and choice.api == "realtime" and choice.agent == "a"


def test_a_redelivered_webhook_decides_the_same_without_a_write() -> None:
    call = incoming("live", "live_1")
    record, first = choose(None, call, agent("live"))
    again, second = choose(record, call, agent("live"))
    assert again is None and first == second


def test_the_sip_call_id_is_hashed_into_a_kv_key_and_is_optional() -> None:
    key = sip_call_key(incoming("live", "live_1", sip_call_id="a b.c*>\u202e"))
    assert key is not None and key.startswith("sip.") and key[4:].isalnum()
    assert sip_call_key(incoming("live", "live_1", sip_call_id=None)) is None
