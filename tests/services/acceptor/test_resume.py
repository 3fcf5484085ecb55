"""A webhook taken up again after OpenAI accepted its call (a write failed, or the acceptor
died) finishes the paperwork and never accepts again, whether its decision reached the
journal or not; one whose decision is on the journal is a duplicate; a claim another
acceptor may still be deciding is left to it until the call's deadline; a webhook whose
handling failed comes back after a growing delay; a claim is written once per call."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta

import openai
from prometheus_client import REGISTRY

from services.acceptor.retries import redelivery_delay
from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SipHeader
from shared.events import CallEventPublisher
from shared.streams import (
    ACCEPTOR_MAX_DELIVER,
    CALL_CLAIMS_BUCKET,
    INCOMING_CALL_SUBJECT,
    WEBHOOKS_STREAM,
)
from simulator import CallerScript, SimulatedCall
from tests.services.acceptor.conftest import Acks, Jobs, Rig
from tests.stack import API_KEY

SALON = AgentProfile(
    name="salon", model="gpt-realtime-2.1", voice="marin", instructions="…", greeting="Hi"
)


async def test_an_accepted_claim_is_resumed_not_accepted_again(rig: Rig) -> None:
    assert rig.nc is not None
    js = rig.nc.jetstream()
    call = await rig.simulator.place_call(CallerScript(), to="+18005551212")
    webhook_id = "wh_" + secrets.token_hex(8)
    agent = AgentProfile(
        name="salon", model="gpt-realtime-2.1", voice="marin", instructions="…", greeting="Hi"
    )
    # What a crash right after OpenAI's 200 leaves behind; the deadline is long past, too.
    jobs = await Jobs().start(rig)
    claims = await js.key_value(CALL_CLAIMS_BUCKET)
    claim = {"webhook_id": webhook_id, "state": "accepted", "agent": agent.model_dump(mode="json")}
    await claims.create(call.call_id, json.dumps(claim).encode())
    await rig.publish(
        IncomingCall(
            webhook_id=webhook_id,
            call_id=call.call_id,
            received_at=datetime.now(UTC) - timedelta(minutes=5),
            sip_headers=[SipHeader(name="To", value="sip:+18005551212@sip.example.com")],
        )
    )

    assert await rig.outcome(call) == "call.accepted"
    job = await jobs.one()

    assert (call.accept_count, call.accept_attempts) == (0, 0)  # no accept was even tried
    assert (job.call_id, job.agent.name) == (call.call_id, "salon")


async def claimed(
    rig: Rig, call: SimulatedCall, *, owner: str, received_at: datetime | None = None
) -> None:
    """The call's claim says `accepting`, written by `owner`; then its webhook arrives."""
    assert rig.nc is not None
    webhook_id = "wh_" + secrets.token_hex(8)
    claims = await rig.nc.jetstream().key_value(CALL_CLAIMS_BUCKET)
    claim = {"webhook_id": webhook_id, "state": "accepting", "owner": owner}
    await claims.create(call.call_id, json.dumps(claim).encode())
    await rig.publish(
        IncomingCall(
            webhook_id=webhook_id,
            call_id=call.call_id,
            received_at=received_at or datetime.now(UTC),
            sip_headers=[SipHeader(name="To", value="sip:+18005551212@sip.example.com")],
        )
    )


async def interrupted_after_the_accept(rig: Rig, *, accepted: bool) -> str:
    """The call id of a call whose handling in this acceptor stopped with its claim
    `accepting`, after OpenAI accepted it (`accepted`) or before it asked: what a JetStream
    that refused the claim's next write for longer than the acceptor retried it leaves."""
    call = await rig.simulator.place_call(CallerScript(), to="+18005551212")
    if accepted:
        client = openai.AsyncOpenAI(api_key=API_KEY, base_url=rig.simulator.base_url)
        await client.realtime.calls.accept(call.call_id, **accept_body(SALON))
        await client.close()
    await claimed(rig, call, owner=rig.acceptor.owner)
    return call.call_id


async def test_a_claim_that_never_said_accepted_is_checked_before_accepting_again(
    rig: Rig,
) -> None:
    await rig.workers(5)
    jobs = await Jobs().start(rig)
    call_id = await interrupted_after_the_accept(rig, accepted=True)
    call = rig.simulator.calls[call_id]

    assert await rig.outcome(call) == "call.accepted"
    assert (await jobs.one()).call_id == call_id
    assert call.accept_count == 1  # the first handling's, not a second one


async def test_a_handling_cut_between_call_accepted_and_the_job_gets_its_job_not_an_accept(
    rig: Rig,
) -> None:
    """The window the journal covers: OpenAI accepted, `call.accepted` is stored, and the
    acceptor died before the session job. Its redelivery finds the decision on the journal
    and publishes the job, without asking OpenAI or the sideband anything."""
    await rig.workers(5)
    jobs, acks = await Jobs().start(rig), await Acks().start(rig)
    call = await rig.simulator.place_call(CallerScript(), to="+18005551212")
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=rig.simulator.base_url)
    await client.realtime.calls.accept(call.call_id, **accept_body(SALON))
    await client.close()
    assert rig.nc is not None
    events = CallEventPublisher(rig.nc.jetstream())
    data = {"agent": "support", "api": "realtime"}
    await events.publish(call.call_id, "call.accepted", data, msg_id=f"accepted:{call.call_id}")
    duplicates = decisions("duplicate")
    await claimed(rig, call, owner=rig.acceptor.owner)

    job = await jobs.one()
    await acks.wait_for(1)
    assert (job.call_id, job.agent.name) == (call.call_id, "support")
    assert call.accept_count == 1 and call.accept_attempts == 1  # ours above, no other
    assert decisions("duplicate") == duplicates + 1
    assert [e.type for e in rig.events.by_call[call.call_id]] == ["call.accepted"]


async def test_a_claim_interrupted_before_its_accept_is_accepted_once(rig: Rig) -> None:
    await rig.workers(5)
    call_id = await interrupted_after_the_accept(rig, accepted=False)
    call = rig.simulator.calls[call_id]

    assert await rig.outcome(call) == "call.accepted"
    assert call.accept_count == 1


async def test_a_claim_another_acceptor_may_still_be_deciding_is_left_to_it(rig: Rig) -> None:
    """Another acceptor claimed the call and its accept is in flight (slow at OpenAI); this
    one gets the webhook (the other's in-progress beats were lost), finds the claim
    `accepting`, and the sideband cannot show that accept yet. Accepting now would answer
    the call twice: it leaves the call to the claim's owner until no accept of that one
    can land, then finds it accepted and only does the paperwork."""
    await rig.workers(5)
    rig.simulator.faults.accept_delay_s = 2.0
    call = await rig.simulator.place_call(CallerScript(), to="+18005551212")
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=rig.simulator.base_url)
    elsewhere = asyncio.create_task(
        client.realtime.calls.accept(call.call_id, **accept_body(SALON))
    )
    try:
        await call.wait_until(lambda c: c.accept_attempts == 1, timeout=10)  # in flight
        assert call.state == "ringing"
        # Two seconds in: the call can still be accepted (and is not shed for its age).
        arrived = datetime.now(UTC) - timedelta(seconds=2)
        await claimed(rig, call, owner="another-acceptor", received_at=arrived)

        assert await rig.outcome(call) == "call.accepted"
        assert call.accept_attempts == 1  # the other acceptor's, and no second one
        await elsewhere
    finally:
        await client.close()


async def test_a_claim_another_acceptor_left_before_accepting_is_missed_past_its_deadline(
    rig: Rig,
) -> None:
    """The other acceptor died before its accept went out (or before it could say so):
    nothing can tell the two apart before the deadline, so the call is not accepted a
    second time; past it, the sideband shows no accept and the call is recorded missed."""
    await rig.workers(5)
    call = await rig.simulator.place_call(CallerScript(), to="+18005551212")
    # Arrived half a second short of its accept deadline: the wait is short.
    arrived = datetime.now(UTC) - timedelta(seconds=rig.settings().accept_deadline_s - 0.5)
    await claimed(rig, call, owner="another-acceptor", received_at=arrived)

    assert await rig.outcome(call) == "call.missed"
    assert rig.decision(call)["reason"] == "deadline"
    assert call.accept_attempts == 0


async def test_a_call_s_claim_is_written_once_whatever_is_decided(rig: Rig) -> None:
    """The claim's create is its only write: the decision's event on the journal says the
    rest (one round trip per call fewer than a `done` write)."""
    await rig.workers(1)
    assert rig.nc is not None
    claims = await rig.nc.jetstream().key_value(CALL_CLAIMS_BUCKET)
    acks = await Acks().start(rig)
    accepted = await rig.ring(to="+18005551212")
    assert await rig.outcome(accepted) == "call.accepted"
    refused = await rig.ring(to="+18005551212")  # the one slot is taken
    assert await rig.outcome(refused) == "call.rejected"
    await acks.wait_for(2)  # both handlings finished, every write made

    for call in (accepted, refused):
        entry = await claims.get(call.call_id)
        assert json.loads(entry.value or b"")["state"] == "accepting"
        first = await claims.watch(call.call_id, include_history=True)
        try:
            created = await first.updates(timeout=5)
            assert created is not None and created.revision == entry.revision
        finally:
            await first.stop()


async def test_a_webhook_redelivered_after_its_decision_is_a_duplicate(rig: Rig) -> None:
    """Its claim says `accepting` (never written again), the journal holds the decision: no
    second accept or reject, no second event, and the webhook is acked."""
    await rig.workers(1)
    acks = await Acks().start(rig)
    accepted, refused = [
        await rig.simulator.place_call(CallerScript(), to="+18005551212") for _ in range(2)
    ]
    webhooks = [
        IncomingCall(
            webhook_id="wh_" + secrets.token_hex(8),
            call_id=call.call_id,
            received_at=datetime.now(UTC),
            sip_headers=[SipHeader(name="To", value="sip:+18005551212@sip.example.com")],
        )
        for call in (accepted, refused)
    ]
    await rig.publish(webhooks[0])
    assert await rig.outcome(accepted) == "call.accepted"
    await rig.publish(webhooks[1])
    assert await rig.outcome(refused) == "call.rejected"  # the one slot is taken
    await acks.wait_for(2)

    # The same webhooks again, as a redelivery after a lost ack would bring them (new
    # messages: the stream's duplicate window would drop the same msg ids).
    duplicates = decisions("duplicate")
    assert rig.nc is not None
    for incoming in webhooks:
        await rig.nc.jetstream().publish(
            INCOMING_CALL_SUBJECT, incoming.model_dump_json().encode(), stream=WEBHOOKS_STREAM
        )
    await acks.wait_for(4)

    assert decisions("duplicate") == duplicates + 2
    assert (accepted.accept_attempts, accepted.reject_attempts) == (1, 0)
    assert (refused.accept_attempts, refused.reject_attempts) == (0, 1)
    assert [e.type for e in rig.events.by_call[accepted.call_id]] == ["call.accepted"]
    assert [e.type for e in rig.events.by_call[refused.call_id]] == ["call.rejected"]


def decisions(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("switchboard_accept_decisions_total", labels) or 0.0


def test_a_failed_webhook_comes_back_sooner_first_then_every_second() -> None:
    delays = [redelivery_delay(delivery) for delivery in range(1, ACCEPTOR_MAX_DELIVER)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert max(delays) == 1.0
    # Its deliveries outlast a leader election and the longest ring: about a minute.
    assert sum(delays) > 50
