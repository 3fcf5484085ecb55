"""The call lease: one owner at a time; a leases bucket that cannot answer (electing a
leader on a cluster, say) delays a call but never fails it; and a nats-server that stops
answering for a moment does not take a call from the worker that still owns it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager

import nats
import pytest
from nats.js import JetStreamContext

from services.session.lease import CallLease, LeaseLost
from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    declare_topology,
)
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.processes import stopped
from tests.stack import Stack, deliveries


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    """JetStream of the test's server, the topology declared."""
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await declare_topology(context)
    yield context
    await nc.close()


async def lease_for(js: JetStreamContext, worker: str, ttl_s: int = 3) -> CallLease:
    return CallLease(js, await js.key_value(CALL_LEASES_BUCKET), "rtc_lease", worker, ttl_s)


def paused(server: NatsServer) -> AbstractContextManager[None]:
    """nats-server stopped (SIGSTOP) as a long GC pause or a stalled disk would: it holds
    what clients send and acts on it when it goes on."""
    assert server.process is not None
    return stopped(server.process.pid)


async def past_the_clock(lease: CallLease) -> None:
    """Taken with a long TTL on the server, then its own clock made short and let run out:
    the server still holds it for us, the worker's clock no longer vouches for it."""
    lease.ttl_s = 1
    await asyncio.sleep(0.6)  # the time the behaviour is about: past ttl_s minus the margin
    assert not lease.held()


async def test_a_held_lease_keeps_other_workers_out_until_released(js: JetStreamContext) -> None:
    first, second = await lease_for(js, "w1"), await lease_for(js, "w2")
    assert await first.acquire()
    assert not await second.acquire()
    await first.release()
    assert not first.held()
    assert await second.acquire()


async def test_a_release_jetstream_cannot_take_leaves_the_lease_to_its_ttl(
    js: JetStreamContext,
) -> None:
    """The call ended and its job was acked; then the bucket is gone (as while it elects a
    leader on a cluster): the release gives up quietly instead of failing the call."""
    lease = await lease_for(js, "w1")
    assert await lease.acquire()
    await js.delete_key_value(CALL_LEASES_BUCKET)
    await lease.release()
    assert not lease.held()  # fenced all the same


async def test_a_job_whose_lease_cannot_be_taken_now_is_returned_not_failed(
    nats_server: NatsServer, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The leases bucket cannot answer when a job arrives: the worker gives the job back for
    a retry a second later, and the call is attached once the bucket answers again."""
    assert stack.simulator is not None
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.delete_key_value(CALL_LEASES_BUCKET)
        (call,) = await stack.simulator.place_calls(CallerScript(), 1, 1)
        await deliveries(js, SESSIONS_STREAM, SESSION_CONSUMER, times=2)
        await declare_topology(js, session_ack_wait_s=stack.settings().session_ack_wait_s)
        await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
    finally:
        await nc.close()
    assert "lease not taken (NoStreamResponseError)" in caplog.text
    # Errors of ours only: asyncio may log here an earlier test's client collected late.
    ours = [r for r in caplog.records if r.name.startswith(("services.", "shared."))]
    assert not [r for r in ours if r.levelno >= logging.ERROR], caplog.text


async def test_a_renewal_whose_reply_never_came_is_still_ours(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    """The renewal timed out while nats-server was paused, and landed when it went on: the
    next renewal finds our own value at a revision it never saw, and keeps the call."""
    lease = await lease_for(js, "w1")
    assert await lease.acquire()
    with paused(nats_server), pytest.raises(nats.errors.TimeoutError):
        await lease.renew()
    await lease.renew()  # LeaseLost before: its revision had moved on
    assert lease.held()
    kv = await js.key_value(CALL_LEASES_BUCKET)
    assert (await kv.get("rtc_lease")).revision == lease.revision
    assert not await (await lease_for(js, "w2")).acquire()


async def test_past_its_clock_a_lease_is_confirmed_by_a_renewal(js: JetStreamContext) -> None:
    """Nobody renewed for a while (the worker's loop was busy, say), but nobody took the
    call either: the next side effect renews and goes ahead instead of dropping the call."""
    lease = await lease_for(js, "w1", ttl_s=30)
    assert await lease.acquire()
    await past_the_clock(lease)
    await lease.confirm()
    assert lease.held()


async def test_past_its_clock_a_lease_another_worker_took_is_lost(js: JetStreamContext) -> None:
    lease = await lease_for(js, "w1", ttl_s=30)
    lease.wrote_last = nobody_else_wrote  # not taken back all the same: it is w2's
    assert await lease.acquire()
    await past_the_clock(lease)
    await (await js.key_value(CALL_LEASES_BUCKET)).purge("rtc_lease")  # as if lapsed
    assert await (await lease_for(js, "w2")).acquire()
    with pytest.raises(LeaseLost):
        await lease.confirm()
    with pytest.raises(LeaseLost):  # and it stays lost: nothing renews it back
        await lease.renew()


async def test_a_released_lease_is_never_confirmed_again(js: JetStreamContext) -> None:
    lease = await lease_for(js, "w1")
    assert await lease.acquire()
    await js.delete_key_value(CALL_LEASES_BUCKET)  # the release's delete fails...
    await lease.release()
    await declare_topology(js)
    with pytest.raises(LeaseLost):  # ...and the call is not taken back all the same
        await lease.confirm()


async def nobody_else_wrote() -> bool:
    return True  # the call's journal: its last event is this owner's


async def someone_else_wrote() -> bool:
    return False


async def test_a_lease_that_lapsed_while_nobody_took_it_is_taken_back(js: JetStreamContext) -> None:
    """nats-server was silent for longer than the TTL and let the key lapse; nobody took
    the call, nobody acted on it: the owner takes the lease back instead of dropping it."""
    lease = await lease_for(js, "w1")
    lease.wrote_last = nobody_else_wrote
    assert await lease.acquire()
    kv = await js.key_value(CALL_LEASES_BUCKET)
    await kv.purge("rtc_lease")  # as the TTL does

    await lease.renew()  # LeaseLost before

    assert lease.held()
    assert (await kv.get("rtc_lease")).revision == lease.revision
    assert not await (await lease_for(js, "w2")).acquire()


async def test_a_lapsed_lease_is_not_taken_back_when_the_call_has_news(
    js: JetStreamContext,
) -> None:
    """Somebody wrote to the call's journal since this owner last did: another worker had
    the call meanwhile. The lease is lost, and the key taken for the check is given up."""
    lease = await lease_for(js, "w1")
    lease.wrote_last = someone_else_wrote
    assert await lease.acquire()
    await (await js.key_value(CALL_LEASES_BUCKET)).purge("rtc_lease")

    with pytest.raises(LeaseLost):
        await lease.renew()

    assert await (await lease_for(js, "w2")).acquire()


async def test_a_lapsed_lease_whose_check_cannot_be_made_is_given_back(
    js: JetStreamContext,
) -> None:
    """The journal cannot be read (its stream electing a leader, say): the key taken for the
    check is given back, so that no later renewal adopts it unchecked."""

    async def journal_unreadable() -> bool:
        raise nats.errors.TimeoutError

    lease = await lease_for(js, "w1")
    lease.wrote_last = journal_unreadable
    assert await lease.acquire()
    await (await js.key_value(CALL_LEASES_BUCKET)).purge("rtc_lease")

    with pytest.raises(nats.errors.TimeoutError):
        await lease.renew()
    assert await (await lease_for(js, "w2")).acquire()  # given back: free for another worker
    with pytest.raises(LeaseLost):
        await lease.renew()
