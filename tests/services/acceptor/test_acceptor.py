"""The acceptor on a real nats-server against the simulated OpenAI: routing, the hook,
admission, accept results, the deadline."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.msg import Msg

from shared.admission import BookReleases
from shared.calls import SessionJob
from shared.streams import SESSION_CONSUMER, SESSIONS_STREAM
from simulator import Faults
from tests.services.acceptor.conftest import Rig


async def session_jobs(rig: Rig, count: int) -> list[SessionJob]:
    """The first `count` session jobs (published just after `call.accepted`: keep fetching)."""
    assert rig.nc is not None
    sub = await rig.nc.jetstream().pull_subscribe_bind(SESSION_CONSUMER, SESSIONS_STREAM)
    jobs: list[SessionJob] = []
    async with asyncio.timeout(10):
        while len(jobs) < count:
            messages = await sub.fetch(count - len(jobs), timeout=5)
            jobs += [SessionJob.model_validate_json(m.data) for m in messages]
    return jobs


async def test_the_dialled_number_picks_the_agent(rig: Rig) -> None:
    await rig.workers(5)
    salon = await rig.ring(to_header="<sip:+61 (468) 002-102@sip.twilio.com>;tag=a1")
    support = await rig.ring(to_header="tel:+1-800-555-1212")
    other = await rig.ring(to="+19998887777")
    for call in (salon, support, other):
        assert await rig.outcome(call) == "call.accepted"
    assert [rig.decision(c)["agent"] for c in (salon, support, other)] == [
        "salon", "support", "default",
    ]  # fmt: skip
    assert salon.accept_body is not None and support.accept_body is not None
    assert salon.accept_body["instructions"] == "You are the booking assistant of Bella Salon."
    assert support.accept_body["audio"]["output"]["voice"] == "cedar"
    jobs = {job.call_id: job for job in await session_jobs(rig, 3)}
    assert jobs[salon.call_id].agent.greeting == "Bella Salon, hello!"
    assert jobs[other.call_id].agent.name == "default"


async def test_a_hook_reply_picks_and_overrides_the_agent(rig: Rig) -> None:
    assert rig.nc is not None
    asked: list[dict] = []

    async def hook(msg: Msg) -> None:
        asked.append(json.loads(msg.data))
        reply = {"agent": "support", "override": {"instructions": "Greet Ana by name."}}
        await msg.respond(json.dumps(reply).encode())

    await rig.nc.subscribe("agents.resolve", cb=hook)
    await rig.nc.flush()
    await rig.workers(5)
    call = await rig.ring("+61468002102")
    assert await rig.outcome(call) == "call.accepted"
    assert call.accept_body is not None
    assert call.accept_body["instructions"] == "Greet Ana by name."
    assert call.accept_body["audio"]["output"]["voice"] == "cedar"
    assert rig.decision(call)["agent"] == "support"
    assert asked[0]["number"] == "+61468002102" and asked[0]["agent"] == "salon"
    assert asked[0]["call_id"] == call.call_id


@pytest.mark.parametrize("answer", ["never", "refused_override", "garbage"])
async def test_a_silent_or_bad_hook_falls_back_to_the_static_agent(rig: Rig, answer: str) -> None:
    assert rig.nc is not None

    async def hook(msg: Msg) -> None:
        if answer == "refused_override":
            bad = {"override": {"turn_detection": {"type": "server_vad", "threshold": 0.9}}}
            await msg.respond(json.dumps(bad).encode())
        elif answer == "garbage":
            await msg.respond(b"not json")
        # "never": no reply; the acceptor waits 250 ms and goes on

    await rig.nc.subscribe("agents.resolve", cb=hook)
    await rig.nc.flush()
    await rig.workers(5)
    call = await rig.ring("+61468002102")
    assert await rig.outcome(call) == "call.accepted"
    assert rig.decision(call)["agent"] == "salon"
    assert call.accept_body is not None
    assert "threshold" not in json.dumps(call.accept_body)


async def test_no_free_slot_rejects_busy_and_a_burst_cannot_overbook(rig: Rig) -> None:
    await rig.workers(2, 1)
    calls = await asyncio.gather(*(rig.ring() for _ in range(8)))
    outcomes = [await rig.outcome(call) for call in calls]
    assert outcomes.count("call.accepted") == 3
    assert outcomes.count("call.rejected") == 5
    for call, outcome in zip(calls, outcomes, strict=True):
        if outcome == "call.rejected":
            assert rig.decision(call) == {
                "reason": "no_capacity", "status_code": 486, "agent": "support",
            }  # fmt: skip
            assert call.state == "rejected" and call.reject_status == 486
            assert call.accept_attempts == 0


async def test_a_draining_or_absent_worker_has_no_slot(rig: Rig) -> None:
    call = await rig.ring()
    assert await rig.outcome(call) == "call.rejected"
    await rig.workers(5, draining=True)
    call = await rig.ring()
    assert await rig.outcome(call) == "call.rejected"


async def test_the_agent_limit_holds_across_acceptor_restarts_until_the_call_ends(
    rig: Rig,
) -> None:
    await rig.workers(10)
    first = await rig.ring("+61468002102")
    assert await rig.outcome(first) == "call.accepted"
    second = await rig.ring("+61468002102")
    assert await rig.outcome(second) == "call.rejected"
    assert rig.decision(second)["reason"] == "agent_limit"
    other_agent = await rig.ring("+18005551212")
    assert await rig.outcome(other_agent) == "call.accepted"

    await rig.stop_acceptor(rig.acceptor)  # the count lives in KV, not in the acceptor
    await rig.add_acceptor()
    await rig.workers(10)
    third = await rig.ring("+61468002102")
    assert await rig.outcome(third) == "call.rejected"

    # The session worker finishing the first call releases its place.
    [job] = [j for j in await session_jobs(rig, 2) if j.call_id == first.call_id]
    assert rig.nc is not None
    await BookReleases(rig.nc.jetstream()).release_limit(first.call_id, job.agent)
    fourth = await rig.ring("+61468002102")
    assert await rig.outcome(fourth) == "call.accepted"


async def test_a_gone_caller_is_missed_and_its_slot_given_back(rig: Rig) -> None:
    await rig.workers(1)
    gone = await rig.ring(hang_up_first=True)
    assert await rig.outcome(gone) == "call.missed"
    assert rig.decision(gone) == {"reason": "caller_gone"}
    assert gone.accept_attempts == 1
    call = await rig.ring()  # the only slot was given back
    assert await rig.outcome(call) == "call.accepted"


@pytest.mark.parametrize("faults", [Faults(accept_status=400)])
async def test_a_refused_accept_fails_without_retry(rig: Rig) -> None:
    await rig.workers(1)
    call = await rig.ring()
    assert await rig.outcome(call) == "call.failed"
    assert rig.decision(call)["reason"] == "accept_refused"
    assert call.accept_attempts == 1
    rig.faults.accept_status = None
    after = await rig.ring()  # the slot was given back
    assert await rig.outcome(after) == "call.accepted"


@pytest.mark.parametrize("faults", [Faults(accept_status=503, accept_fail_times=2)])
async def test_server_errors_are_retried_while_the_call_can_be_answered(rig: Rig) -> None:
    await rig.workers(1)
    call = await rig.ring()
    assert await rig.outcome(call) == "call.accepted"
    assert call.accept_attempts == 3 and call.accept_count == 1


@pytest.mark.parametrize("faults", [Faults(accept_status=500)])
async def test_server_errors_past_the_deadline_give_up(rig: Rig) -> None:
    await rig.stop_acceptor(rig.acceptor)
    rig.settings_overrides["accept_deadline_s"] = 1.0
    await rig.add_acceptor()
    await rig.workers(1)
    call = await rig.ring()
    assert await rig.outcome(call) == "call.failed"
    assert rig.decision(call)["reason"] == "accept_deadline"
    assert call.accept_attempts >= 2 and call.accept_count == 0


async def test_a_webhook_older_than_the_deadline_is_not_accepted(rig: Rig) -> None:
    await rig.workers(1)
    stale = await rig.ring(received_at=datetime.now(UTC) - timedelta(seconds=30))
    assert await rig.outcome(stale) == "call.missed"
    assert rig.decision(stale) == {"reason": "deadline"}
    assert stale.accept_attempts == 0
