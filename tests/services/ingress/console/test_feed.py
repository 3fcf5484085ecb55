"""The console's live feed on a real nats-server: rebuilt from the stream and the leases
when it starts, and a console that cannot keep up is dropped rather than waited for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from services.ingress.console.feed import QUEUE_FRAMES, ConsoleFeed
from shared.events import CallEventPublisher
from shared.streams import CALL_LEASES_BUCKET, declare_topology
from switchboard.nats_server import NatsServer
from tests.services.ingress.conftest import metric

SIP = [
    {"name": "From", "value": "sip:+14155550123@example.com"},
    {"name": "To", "value": "sip:+61468002102@example.com"},
]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await declare_topology(client.jetstream())
    yield client
    await client.close()


async def test_a_long_call_older_than_the_replayed_tail_still_shows_in_full(nc: Client) -> None:
    publisher = CallEventPublisher(nc.jetstream())
    await publisher.publish("rtc_long", "call.received", {"sip_headers": SIP, "api": "realtime"})
    await publisher.publish("rtc_long", "call.accepted", {"agent": "salon"})
    for n in range(10):
        await publisher.publish("rtc_long", "transcript.caller", {"text": f"line {n}"})
    leases = await nc.jetstream().key_value(CALL_LEASES_BUCKET)
    await leases.put("rtc_long", json.dumps({"worker": "worker-9", "attempt": 2}).encode())

    feed = ConsoleFeed(lambda: nc, replay=3)  # the tail holds none of its first events
    await feed.join()

    call = feed.board.live["rtc_long"]
    assert (call.to, call.from_, call.agent) == ("+61468002102", "+14155550123", "salon")
    assert (call.worker, call.attempt, call.state) == ("worker-9", 2, "live")
    assert call.snippet == "caller: line 9" and call.seq == 12
    await feed.close()


async def test_a_console_that_falls_behind_is_dropped_not_waited_for(nc: Client) -> None:
    feed = ConsoleFeed(lambda: nc)
    slow = await feed.join()
    keeping_up = await feed.join()
    assert metric("switchboard_console_viewers") == 2
    while slow.push(b": filler\n\n"):  # its response stopped reading
        pass
    assert slow.frames.qsize() == QUEUE_FRAMES

    await CallEventPublisher(nc.jetstream()).publish("rtc_new", "call.accepted", {"agent": "x"})

    async with asyncio.timeout(5):
        assert (await keeping_up.frames.get() or b"").startswith(b"event: snapshot")
        assert b"rtc_new" in (await keeping_up.frames.get() or b"")
    # The same frame dropped the slow one: its stream ends, and its browser reconnects.
    assert slow.frames.qsize() == 1 and slow.frames.get_nowait() is None
    assert metric("switchboard_console_viewers") == 1
    await feed.close()
