"""The call lease: one owner at a time, and a release that never fails a finished call."""

from __future__ import annotations

import nats
from nats.js import JetStreamContext

from services.session.lease import CallLease
from shared.nats_server import NatsServer
from shared.streams import CALL_LEASES_BUCKET, declare_topology


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
