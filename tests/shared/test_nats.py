"""`shared.nats`: a connection the server closes is re-established; the watch behind
liveness knows for how long NATS has been out of reach. A real nats-server."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg

from shared.nats import ConnectionWatch, connect
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import until


async def over_the_limit(nc: nats.aio.client.Client) -> None:
    """A publish the client lets through and the server refuses with `-ERR` and a close:
    a payload under `max_payload` whose headers push the message over it."""
    payload = b"x" * (nc.max_payload - 100)
    await nc.publish("probe.big", payload, headers={"X-Pad": "p" * 1000})
    await nc.flush(timeout=5)


async def test_a_connection_the_server_closes_is_reestablished(nats_server: NatsServer) -> None:
    watch = ConnectionWatch()
    nc = await connect([nats_server.url], "probe", watch)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await received.put(msg.data)

    await nc.subscribe("probe.small", cb=on_msg)
    try:
        try:
            await over_the_limit(nc)
        except Exception:  # the flush may meet the closing connection
            pass
        await until(  # reconnected, and the callback told the watch
            lambda: nc.stats["reconnects"] >= 1 and nc.is_connected and watch.down_since is None,
            timeout=15,
        )
        assert not nc.is_closed
        assert watch.down_for() == 0 and not watch.closed
        # The subscription came back with the connection.
        other = await nats.connect(nats_server.url)
        await other.publish("probe.small", b"still here")
        await other.close()
        assert await asyncio.wait_for(received.get(), 10) == b"still here"
    finally:
        await nc.close()
    assert watch.closed  # closing it ourselves is for good


async def test_the_watch_counts_the_time_nats_is_out_of_reach(nats_server: NatsServer) -> None:
    watch = ConnectionWatch()
    nc = await connect([nats_server.url], "probe", watch)
    try:
        assert watch.alive(grace_s=1.0)
        nats_server.stop()
        await until(lambda: watch.down_since is not None, timeout=10)
        nats_server.start()
        await until(lambda: watch.down_since is None, timeout=15)
        assert watch.alive(grace_s=0.0) and nc.is_connected
    finally:
        await nc.close()


def test_liveness_is_lost_after_the_grace_or_at_once_when_closed() -> None:
    now = [100.0]
    watch = ConnectionWatch(clock=lambda: now[0])
    watch.went_down()
    now[0] += 2.9
    assert watch.alive(grace_s=3.0)
    now[0] += 0.2
    assert not watch.alive(grace_s=3.0)
    watch.came_back()
    assert watch.alive(grace_s=3.0)
    watch.closed = True
    assert not watch.alive(grace_s=3.0)
