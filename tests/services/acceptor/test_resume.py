"""A webhook taken up again after OpenAI accepted its call (a write failed, or the acceptor
died) finishes the paperwork and never accepts again, whether or not its claim got to say
so; a claim another acceptor may still be deciding is left to it until the call's deadline;
a webhook whose handling failed comes back after a growing delay."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta

import openai
from nats.js.kv import KeyValue

from services.acceptor.retries import redelivery_delay
from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SessionJob, SipHeader
from shared.streams import ACCEPTOR_MAX_DELIVER, CALL_CLAIMS_BUCKET, SESSIONS_STREAM
from simulator import CallerScript, SimulatedCall
from tests.services.acceptor.conftest import Rig
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
    await until_claim_done(claims, call.call_id)  # written after the session job

    assert (call.accept_count, call.accept_attempts) == (0, 0)  # no accept was even tried
    stored = await js.get_last_msg(SESSIONS_STREAM, "sessions.jobs")
    job = SessionJob.model_validate_json(stored.data or b"")
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
    call_id = await interrupted_after_the_accept(rig, accepted=True)
    call = rig.simulator.calls[call_id]

    assert await rig.outcome(call) == "call.accepted"
    assert rig.nc is not None
    await until_claim_done(await rig.nc.jetstream().key_value(CALL_CLAIMS_BUCKET), call_id)

    assert call.accept_count == 1  # the first handling's, not a second one
    stored = await rig.nc.jetstream().get_last_msg(SESSIONS_STREAM, "sessions.jobs")
    assert SessionJob.model_validate_json(stored.data or b"").call_id == call_id


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


async def test_an_accepted_call_s_claim_says_accepting_then_done_and_nothing_between(
    rig: Rig,
) -> None:
    """One claim write after the create: the crash between the accept and the hand-off is
    covered by the sideband question above, not by a write every call pays for."""
    await rig.workers(5)
    assert rig.nc is not None
    claims = await rig.nc.jetstream().key_value(CALL_CLAIMS_BUCKET)
    watcher = await claims.watchall()  # the bucket keeps one value per key: watch them come
    try:
        call = await rig.ring(to="+18005551212")
        assert await rig.outcome(call) == "call.accepted"
        states: list[str] = []
        while "done" not in states:
            entry = await watcher.updates(timeout=10)
            if entry is not None and entry.key == call.call_id and entry.value:
                states.append(json.loads(entry.value)["state"])
    finally:
        await watcher.stop()
    assert states == ["accepting", "done"]


async def until_claim_done(claims: KeyValue, call_id: str) -> None:
    watcher = await claims.watch(call_id)
    try:
        while True:
            entry = await watcher.updates(timeout=10)
            if entry is not None and entry.value and json.loads(entry.value)["state"] == "done":
                return
    finally:
        await watcher.stop()


def test_a_failed_webhook_comes_back_sooner_first_then_every_second() -> None:
    delays = [redelivery_delay(delivery) for delivery in range(1, ACCEPTOR_MAX_DELIVER)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert max(delays) == 1.0
    # Its deliveries outlast a leader election and the longest ring: about a minute.
    assert sum(delays) > 50
