"""`shared.broker.ReconnectingBroker`: a FastStream broker whose connection the server
closes comes back, subscribers included. A real nats-server."""

from __future__ import annotations

import asyncio

from shared.broker import ReconnectingBroker
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import until
from tests.shared.test_nats import over_the_limit


async def test_a_broker_connection_the_server_closes_is_reestablished(
    nats_server: NatsServer,
) -> None:
    broker = ReconnectingBroker(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    received: asyncio.Queue[str] = asyncio.Queue()

    @broker.subscriber("probe.broker")
    async def on_probe(body: str) -> None:
        await received.put(body)

    await broker.start()
    try:
        connection = broker.connection
        try:
            await over_the_limit(connection)
        except Exception:  # the flush may meet the closing connection
            pass
        await until(lambda: connection.stats["reconnects"] >= 1 and connection.is_connected, 15)
        assert not connection.is_closed
        await broker.publish("still here", "probe.broker")
        assert await asyncio.wait_for(received.get(), 10) == "still here"
    finally:
        await broker.stop()
