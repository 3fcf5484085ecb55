"""The acceptor with GPT-Live calls, on a real nats-server against the simulator: routed by
the dialled number, accepted with `client.live.sessions.accept` or rejected with a SIP
status; one SIP call offered through both APIs is accepted once, through the API its agent
names, whichever webhook comes first or both at once, the other recorded as superseded."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js.api import Header

from shared.calls import IncomingCall, SipHeader
from shared.live_accept import live_session
from shared.streams import (
    INCOMING_CALL_SUBJECT,
    LIVE_INCOMING_CALL_SUBJECT,
    WEBHOOKS_STREAM,
)
from simulator import CallerScript, Faults
from simulator.live import LiveSession
from switchboard.nats_server import NatsServer
from tests.services.acceptor.conftest import AGENTS, Jobs, Rig

LIVE_NUMBER = "+61468002103"
AGENTS_WITH_LIVE = (
    AGENTS
    + f"""  - name: reminders
    api: live
    numbers: ["{LIVE_NUMBER}"]
    voice: marin
    instructions: "You call customers to confirm appointments."
    greeting: "Hi, this is Bella Salon."
    delegation: {{model: gpt-5-mini, instructions: "Use the tools."}}
    tools:
      - name: lookup_booking
        parameters: {{type: object, properties: {{id: {{type: string}}}}}}
      - builtin: end_call
"""
)
REALTIME_NUMBER = "+18005551212"  # the `support` agent (Realtime)


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(AGENTS_WITH_LIVE)
    return path


def webhook(api: str, call_id: str, to: str, sip_call_id: str | None) -> IncomingCall:
    headers = [
        SipHeader(name="From", value="sip:+14155550123@sip.example.com"),
        SipHeader(name="To", value=f"sip:{to}@sip.example.com"),
    ]
    if sip_call_id is not None:
        headers.append(SipHeader(name="Call-ID", value=sip_call_id))
    return IncomingCall(
        webhook_id="wh_" + secrets.token_hex(8), call_id=call_id, api=api,
        received_at=datetime.now(UTC), sip_headers=headers,
    )  # fmt: skip


async def publish(rig: Rig, incoming: IncomingCall) -> None:
    """As the ingress does: each API's calls on their own subject."""
    assert rig.nc is not None
    subject = LIVE_INCOMING_CALL_SUBJECT if incoming.api == "live" else INCOMING_CALL_SUBJECT
    await rig.nc.jetstream().publish(
        subject, incoming.model_dump_json().encode(), stream=WEBHOOKS_STREAM,
        headers={Header.MSG_ID.value: incoming.webhook_id},
    )  # fmt: skip


async def decided(rig: Rig, call_id: str, types: tuple[str, ...]) -> str:
    def found() -> list[str]:
        return [e.type for e in rig.events.by_call[call_id] if e.type in types]

    await rig.events.wait_until(found, 15)
    return found()[0]


async def test_a_live_call_is_accepted_through_live_with_the_sdks_session(rig: Rig) -> None:
    await rig.workers(5)
    jobs = await Jobs().start(rig)
    session = await rig.simulator.live.place_call(CallerScript(), send_webhooks=False)
    await publish(rig, webhook("live", session.session_id, LIVE_NUMBER, "sip-1"))

    assert await decided(rig, session.session_id, ("call.accepted",)) == "call.accepted"
    await session.wait_for("accepted")
    [accepted] = rig.events.of_type(session.session_id, "call.accepted")
    assert accepted.data == {"agent": "reminders", "api": "live"}
    agent = rig.acceptor.resolver.directory.named("reminders")
    assert agent is not None and session.config == live_session(agent)
    assert session.accept_count == 1
    job = await jobs.one()
    assert job.call_id == session.session_id and job.agent.api == "live"


async def test_a_live_call_refused_for_capacity_is_rejected_through_live(rig: Rig) -> None:
    await rig.workers(0)
    session = await rig.simulator.live.place_call(CallerScript(), send_webhooks=False)
    await publish(rig, webhook("live", session.session_id, LIVE_NUMBER, None))

    assert await decided(rig, session.session_id, ("call.rejected",)) == "call.rejected"
    await session.wait_for("rejected")
    assert session.reject_status == 486 and session.accept_attempts == 0


@pytest.mark.parametrize("order", ["live_first", "realtime_first", "at_once"])
@pytest.mark.parametrize("agent_api", ["live", "realtime"])
async def test_one_sip_call_two_webhooks_one_accept_through_the_agents_api(
    rig: Rig, order: str, agent_api: str
) -> None:
    await rig.workers(5)
    jobs = await Jobs().start(rig)
    number = LIVE_NUMBER if agent_api == "live" else REALTIME_NUMBER
    session: LiveSession = await rig.simulator.live.place_call(
        CallerScript(), to=number, also_realtime=True, send_webhooks=False
    )
    assert session.partner is not None
    realtime = rig.simulator.calls[session.partner]
    live_hook = webhook("live", session.session_id, number, session.sip_call_id)
    realtime_hook = webhook("realtime", realtime.call_id, number, session.sip_call_id)
    answering, other = (
        (session.session_id, realtime.call_id)
        if agent_api == "live"
        else (realtime.call_id, session.session_id)
    )

    if order == "at_once":
        await asyncio.gather(publish(rig, live_hook), publish(rig, realtime_hook))
    else:
        first, second = (
            (live_hook, realtime_hook) if order == "live_first" else (realtime_hook, live_hook)
        )
        await publish(rig, first)
        await decided(rig, first.call_id, ("call.accepted", "call.superseded"))
        await publish(rig, second)

    assert await decided(rig, answering, ("call.accepted", "call.superseded")) == "call.accepted"
    assert await decided(rig, other, ("call.accepted", "call.superseded")) == "call.superseded"
    [superseded] = rig.events.of_type(other, "call.superseded")
    assert superseded.data["by_api"] == agent_api
    assert superseded.data["api"] == ("realtime" if agent_api == "live" else "live")
    if order != "at_once" and (order == "live_first") == (agent_api == "live"):
        assert superseded.data["by_call_id"] == answering  # the answering one came first
    assert not rig.events.of_type(other, "call.missed")
    assert not rig.events.of_type(other, "call.rejected")
    # Exactly one accept request, through the agent's API; none through the other.
    assert (session.accept_attempts, realtime.accept_attempts) == (
        (1, 0) if agent_api == "live" else (0, 1)
    )
    job = await jobs.one()
    assert job.call_id == answering and job.agent.api == agent_api


async def test_a_live_call_to_no_agents_number_gets_the_default_agent_on_live(rig: Rig) -> None:
    await rig.workers(5)
    jobs = await Jobs().start(rig)
    session = await rig.simulator.live.place_call(CallerScript(), send_webhooks=False)
    await publish(rig, webhook("live", session.session_id, "+19999999999", "sip-9"))

    assert await decided(rig, session.session_id, ("call.accepted",)) == "call.accepted"
    job = await jobs.one()
    assert (job.agent.name, job.agent.api, job.agent.model) == ("default", "live", "gpt-live-1")
    assert session.config["model"] == "gpt-live-1" and "delegation" not in session.config


async def test_both_webhooks_to_no_agents_number_are_answered_once(rig: Rig) -> None:
    """The default agent follows each webhook's API; the first decided wins the SIP call."""
    await rig.workers(5)
    session = await rig.simulator.live.place_call(
        CallerScript(), to="+19999999999", also_realtime=True, send_webhooks=False
    )
    assert session.partner is not None
    realtime = rig.simulator.calls[session.partner]
    hooks = [
        webhook("live", session.session_id, "+19999999999", session.sip_call_id),
        webhook("realtime", realtime.call_id, "+19999999999", session.sip_call_id),
    ]
    await asyncio.gather(*(publish(rig, hook) for hook in hooks))
    outcomes = {
        hook.call_id: await decided(rig, hook.call_id, ("call.accepted", "call.superseded"))
        for hook in hooks
    }
    assert sorted(outcomes.values()) == ["call.accepted", "call.superseded"]
    assert session.accept_attempts + realtime.accept_attempts == 1


async def test_a_live_accept_slower_than_its_request_timeout_is_confirmed_not_repeated(
    nats_server: NatsServer, agents_file: Path
) -> None:
    """The accept's answer never comes in time; the acceptor asks GPT-Live's sideband
    whether it went through instead of accepting twice."""
    rig = await Rig(
        nats_server.url, agents_file, faults=Faults(accept_delay_s=1.0),
        settings_overrides={"openai_timeout_s": 0.5},  # the accept is applied after 1 s
    ).start()  # fmt: skip
    try:
        await rig.workers(5)
        session = await rig.simulator.live.place_call(CallerScript(), send_webhooks=False)
        await publish(rig, webhook("live", session.session_id, LIVE_NUMBER, None))
        decision = await decided(rig, session.session_id, ("call.accepted", "call.failed"))
    finally:
        await rig.stop()
    assert decision == "call.accepted"
    assert (session.accept_attempts, session.accept_count) == (1, 1)
    assert session.attach_count >= 1  # the probe: attached, so accepted


async def test_a_webhook_too_late_to_answer_leaves_the_sip_call_to_the_other_api(
    rig: Rig,
) -> None:
    """Its API is chosen while its claim is written, but not once its deadline has passed:
    a record naming it would supersede the other API's webhook, and nobody would answer."""
    await rig.workers(5)
    session = await rig.simulator.live.place_call(
        CallerScript(), to="+19999999999", also_realtime=True, send_webhooks=False
    )
    assert session.partner is not None
    realtime = rig.simulator.calls[session.partner]
    late = webhook("realtime", realtime.call_id, "+19999999999", session.sip_call_id)
    late = late.model_copy(update={"received_at": datetime.now(UTC) - timedelta(seconds=60)})
    await publish(rig, late)
    answers = ("call.missed", "call.accepted", "call.superseded")
    assert await decided(rig, realtime.call_id, answers) == "call.missed"

    await publish(rig, webhook("live", session.session_id, "+19999999999", session.sip_call_id))
    assert await decided(rig, session.session_id, answers) == "call.accepted"
    assert realtime.accept_attempts == 0 and session.accept_count == 1
