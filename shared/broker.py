"""FastStream's `NatsBroker` on our reconnecting client (`shared.nats.ReconnectingClient`).

The acceptor and tool services talk to NATS through FastStream, which opens its connection
with `nats.connect`: a plain nats-py client that closes for good when the server ends the
connection with an `-ERR`. This broker opens the same connection with our client, so those
processes reconnect like every other. Overrides FastStream's `_connect` (0.7, pinned below
0.8 in pyproject.toml); tests/shared/test_broker.py holds it to the behaviour.
"""

from __future__ import annotations

from faststream.nats import NatsBroker
from nats.aio.client import Client

from shared.nats import ReconnectingClient


class ReconnectingBroker(NatsBroker):
    async def _connect(self) -> Client:
        connection = ReconnectingClient()
        await connection.connect(**self._connection_kwargs)
        self.config.connect(connection)
        return connection
