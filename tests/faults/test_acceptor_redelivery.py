"""The write after a successful accept fails: the redelivered webhook must not be decided
again.

In the 3-node cluster test this happens when the node leading the events stream (or the
session job stream, or the claims bucket) dies while an accept is in flight: OpenAI has
answered 200, the acceptor's next JetStream write fails, the handler raises, and the
webhook is redelivered. Here the same failure is made deterministic on one nats-server:
the CALL_EVENTS stream is deleted after `call.received` while the (slowed) accept is in
flight, and declared again once OpenAI has answered it.
"""

from __future__ import annotations

import asyncio

import nats
import pytest

from services.acceptor import main as acceptor_main
from services.acceptor import retries
from shared.events import CALL_EVENTS_STREAM
from shared.streams import (
    ACCEPTOR_ACK_WAIT_S,
    ACCEPTOR_CONSUMER,
    CALL_CLAIMS_BUCKET,
    WEBHOOKS_STREAM,
    declare_topology,
)
from simulator import Faults
from switchboard.nats_server import NatsServer
from tests.faults.test_openai_faults import CONVERSATION, running
from tests.stack import Stack, deliveries


async def test_a_failed_write_after_accept_does_not_accept_again(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The acceptor retries a write after an accept in place for 20 s, which would outlast
    # the outage and leave the redelivery untested: it gives up after half a second here.
    monkeypatch.setattr(retries, "WRITE_RETRY_S", 0.5)
    nc = await nats.connect(nats_server.url)
    try:
        # A 3 s accept leaves the test ample time to break the stream, on a busy machine too;
        # the request timeout and deadline are raised so that no accept times out.
        slow = Faults(accept_delay_s=3.0)
        async with running(
            nats_server, slow, openai_timeout_s=10.0, accept_deadline_s=15.0
        ) as stack:
            await fail_events_during_first_accept(nc, stack)
    finally:
        await nc.close()


async def fail_events_during_first_accept(nc: nats.aio.client.Client, stack: Stack) -> None:
    assert stack.simulator is not None
    js = nc.jetstream()
    (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
    # call.received is out and the accept takes 3 s: the acceptor's next write will fail.
    await stack.events.wait_for(call.call_id, "call.received", timeout=15)
    await js.delete_stream(CALL_EVENTS_STREAM)
    await call.wait_until(lambda c: c.accept_count == 1, timeout=15)
    # The handler gave up and the webhook came back (the first delivery and a redelivery),
    # while the events stream is still missing: the redelivery found the claim `accepting`
    # and asked the call's sideband, which says it is accepted.
    await deliveries(js, WEBHOOKS_STREAM, ACCEPTOR_CONSUMER, times=2)
    ack_wait = stack.settings().session_ack_wait_s
    await declare_topology(js, replicas=1, session_ack_wait_s=ack_wait)
    await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
    # One accept request in all: the redeliveries finished the paperwork only.
    assert call.accept_attempts == 1, (call.accept_attempts, stack.events.types(call.call_id))
    assert stack.events.types(call.call_id).count("call.accepted") == 1


async def test_a_claims_bucket_outage_delays_the_decision_but_loses_no_call(
    nats_server: NatsServer,
) -> None:
    """JetStream refuses the acceptor's first write at once (no claims bucket, as while its
    leader is elected on a cluster): the webhook is retried after a growing delay instead of
    spending its deliveries in a burst, and the call is accepted once the bucket is back."""
    nc = await nats.connect(nats_server.url)
    try:
        async with running(nats_server, Faults(), accept_deadline_s=15.0) as stack:
            assert stack.simulator is not None
            js = nc.jetstream()
            await js.delete_key_value(CALL_CLAIMS_BUCKET)
            (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
            # The acceptor tried and failed, three times over.
            await deliveries(js, WEBHOOKS_STREAM, ACCEPTOR_CONSUMER, times=4)
            ack_wait = stack.settings().session_ack_wait_s
            await declare_topology(js, replicas=1, session_ack_wait_s=ack_wait)
            await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
            assert call.accept_count == 1, (call.accept_attempts, stack.events.types(call.call_id))
    finally:
        await nc.close()


async def test_an_accept_slower_than_the_ack_wait_is_not_redelivered_and_sent_again(
    nats_server: NatsServer,
) -> None:
    """OpenAI takes longer to answer than the webhook consumer's ack wait (5 s): the acceptor
    keeps the delivery alive meanwhile, so JetStream does not hand the webhook to another
    handler, which would find the claim still `accepting` and send a second accept."""
    slow = Faults(accept_delay_s=ACCEPTOR_ACK_WAIT_S + 1.5)
    async with running(nats_server, slow, openai_timeout_s=15.0, accept_deadline_s=20.0) as stack:
        assert stack.simulator is not None
        (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
        await stack.events.wait_for(call.call_id, "session.attached", timeout=30)
        assert call.accept_attempts == 1, stack.events.types(call.call_id)


async def test_a_webhook_redelivered_while_still_decided_is_not_accepted_twice(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-progress beats that keep a slow accept's delivery ours are lost (as while the
    webhooks stream elects a leader): JetStream redelivers the webhook to the acceptor that
    is still deciding it, which must not start a second handling (finding the claim
    `accepting` before the first accept went out, it would accept again)."""

    async def no_beats(message: object) -> None:
        await asyncio.Event().wait()  # never signals: the beats are lost

    monkeypatch.setattr(acceptor_main, "_in_progress_while_handled", no_beats)
    slow = Faults(accept_delay_s=ACCEPTOR_ACK_WAIT_S + 1.5)
    async with running(nats_server, slow, openai_timeout_s=15.0, accept_deadline_s=20.0) as stack:
        assert stack.simulator is not None
        (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
        await stack.events.wait_for(call.call_id, "session.attached", timeout=30)
        assert call.accept_attempts == 1, stack.events.types(call.call_id)
