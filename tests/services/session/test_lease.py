"""The call lease: one owner at a time, and a leases bucket that cannot answer (electing a
leader on a cluster, say) delays a call but never fails it."""

from __future__ import annotations

import logging

import nats
import pytest
from nats.js import JetStreamContext

from services.session.lease import CallLease
from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    declare_topology,
)
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.stack import Stack, deliveries


async def lease_for(js: JetStreamContext, worker: str) -> CallLease:
    return CallLease(js, await js.key_value(CALL_LEASES_BUCKET), "rtc_lease", worker, ttl_s=3)


async def test_a_held_lease_keeps_other_workers_out_until_released(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await declare_topology(js)
        first, second = await lease_for(js, "w1"), await lease_for(js, "w2")
        assert await first.acquire()
        assert not await second.acquire()
        await first.release()
        assert not first.held()
        assert await second.acquire()
    finally:
        await nc.close()


async def test_a_release_jetstream_cannot_take_leaves_the_lease_to_its_ttl(
    nats_server: NatsServer,
) -> None:
    """The call ended and its job was acked; then the bucket is gone (as while it elects a
    leader on a cluster): the release gives up quietly instead of failing the call."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await declare_topology(js)
        lease = await lease_for(js, "w1")
        assert await lease.acquire()
        await js.delete_key_value(CALL_LEASES_BUCKET)
        await lease.release()
        assert not lease.held()  # fenced all the same
    finally:
        await nc.close()


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
