"""The write after a successful accept fails: the webhook, tried again, must not be decided
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
from prometheus_client import REGISTRY

from services.acceptor import main as acceptor_main
from services.acceptor import retries
from services.acceptor.main import Acceptor
from shared.events import CALL_EVENTS_STREAM
from shared.streams import (
    ACCEPTOR_ACK_WAIT_S,
    CALL_CLAIMS_BUCKET,
    declare_topology,
)
from simulator import Faults
from switchboard.nats_server import NatsServer
from tests.faults.test_openai_faults import CONVERSATION, running
from tests.stack import Stack


def retried(where: str = "here") -> float:
    return REGISTRY.get_sample_value("switchboard_accept_retries_total", {"where": where}) or 0


async def until_retried(since: float, times: int, timeout: float = 15.0) -> None:
    """Until the acceptor tried failed handlings again `times` times since `since` (polled:
    a counter announces nothing)."""
    async with asyncio.timeout(timeout):
        while True:
            if retried() >= since + times:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("acceptors", [1, 2])
async def test_a_failed_write_after_accept_does_not_accept_again(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, acceptors: int
) -> None:
    """With a second acceptor too: the failed handling is tried again where it ran, the one
    process that knows it is over, so nothing waits out the call's deadline elsewhere."""
    # The acceptor retries a write after an accept in place for 20 s, which would outlast
    # the outage and leave the retry untested: it gives up after half a second here.
    monkeypatch.setattr(retries, "WRITE_RETRY_S", 0.5)
    nc = await nats.connect(nats_server.url)
    try:
        # A 3 s accept leaves the test ample time to break the stream, on a busy machine too;
        # the request timeout and deadline are raised so that no accept times out.
        slow = Faults(accept_delay_s=3.0)
        async with running(
            nats_server, slow, openai_timeout_s=10.0, accept_deadline_s=15.0
        ) as stack:
            extra = [Acceptor(stack.settings(), 0, "127.0.0.1") for _ in range(acceptors - 1)]
            for acceptor in extra:
                await acceptor.start()
            left_elsewhere = retried("elsewhere")
            try:
                await fail_events_during_first_accept(nc, stack)
            finally:
                for acceptor in extra:
                    await acceptor.stop()
            assert retried("elsewhere") == left_elsewhere
    finally:
        await nc.close()


async def fail_events_during_first_accept(nc: nats.aio.client.Client, stack: Stack) -> None:
    assert stack.simulator is not None
    js = nc.jetstream()
    before = retried()
    (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
    # call.received is out and the accept takes 3 s: the acceptor's next write will fail.
    await stack.events.wait_for(call.call_id, "call.received", timeout=15)
    await js.delete_stream(CALL_EVENTS_STREAM)
    await call.wait_until(lambda c: c.accept_count == 1, timeout=15)
    # The handling gave up and was tried again, twice, while the events stream is still
    # missing: the second try found the claim `accepting` and asked the call's sideband,
    # which says it is accepted, and failed on the paperwork again.
    await until_retried(before, times=2)
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
            before = retried()
            (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
            # The acceptor tried and failed, three times over.
            await until_retried(before, times=3)
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
    await accepted_once_though_slower_than_the_ack_wait(nats_server)


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
    await accepted_once_though_slower_than_the_ack_wait(nats_server)


async def accepted_once_though_slower_than_the_ack_wait(nats_server: NatsServer) -> None:
    """A call whose accept takes longer than the webhook consumer's ack wait is attached
    after one accept request."""
    slow = Faults(accept_delay_s=ACCEPTOR_ACK_WAIT_S + 1.5)
    async with running(nats_server, slow, openai_timeout_s=15.0, accept_deadline_s=20.0) as stack:
        assert stack.simulator is not None
        (call,) = await stack.simulator.place_calls(CONVERSATION, 1, 1)
        await stack.events.wait_for(call.call_id, "session.attached", timeout=30)
        assert call.accept_attempts == 1, stack.events.types(call.call_id)
