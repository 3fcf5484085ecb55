"""Every service declares the topology at start-up: doing it again changes nothing."""

from __future__ import annotations

import nats

from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    WEBHOOKS_STREAM,
    declare_topology,
)
from switchboard.nats_server import NatsServer


async def test_declaring_twice_is_harmless_and_keeps_messages(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await declare_topology(js)
    await js.publish("webhooks.realtime.call.incoming", b"{}", stream=WEBHOOKS_STREAM)

    await declare_topology(js, session_ack_wait_s=9.0)

    assert (await js.stream_info(WEBHOOKS_STREAM)).state.messages == 1
    consumer = await js.consumer_info(SESSIONS_STREAM, SESSION_CONSUMER)
    assert consumer.config.ack_wait == 9.0
    await js.key_value(CALL_LEASES_BUCKET)
    await nc.close()
