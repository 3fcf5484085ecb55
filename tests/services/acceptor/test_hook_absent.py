"""With no hook running, NATS answers "no responders" and the resolver stops asking for a
moment (a round trip per call for nothing); a hook that starts is asked again after it.
A real nats-server; requests are counted by the resolver's own connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.acceptor.hook import RESOLVE_SUBJECT, AgentResolver
from switchboard.nats_server import NatsServer
from tests.services.acceptor.test_hook_fuzz import CALL, DIRECTORY, SALON

RECHECK_S = 2.0


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def test_no_hook_is_asked_once_then_left_alone_for_a_moment(nc: Client) -> None:
    resolver = AgentResolver(DIRECTORY, nc, hook_timeout_s=5.0, absent_recheck_s=60.0)
    sent = nc.stats["out_msgs"]
    for _ in range(5):
        assert await resolver(CALL) == SALON
    assert nc.stats["out_msgs"] - sent == 1


async def test_a_hook_that_starts_is_asked_once_the_pause_is_over(
    nc: Client, nats_server: NatsServer
) -> None:
    resolver = AgentResolver(DIRECTORY, nc, hook_timeout_s=5.0, absent_recheck_s=RECHECK_S)
    assert await resolver(CALL) == SALON  # nobody there
    paused_at = time.monotonic()

    hook_nc = await nats.connect(nats_server.url)
    asked = asyncio.Event()

    async def answer(msg: Msg) -> None:
        asked.set()
        await msg.respond(b'{"agent": "support"}')

    try:
        await hook_nc.subscribe(RESOLVE_SUBJECT, cb=answer)
        await hook_nc.flush()
        if time.monotonic() - paused_at < RECHECK_S - 0.5:  # (a starved machine may be past it)
            assert (await resolver(CALL)).name == "salon"  # within the pause: not asked
            assert not asked.is_set()
        while (await resolver(CALL)).name != "support":
            assert time.monotonic() - paused_at < RECHECK_S + 5.0
            await asyncio.sleep(0.05)  # the pause is time itself: nothing to wait for
        assert time.monotonic() - paused_at >= RECHECK_S
        assert asked.is_set()
    finally:
        await hook_nc.close()


async def test_a_hook_that_answers_is_asked_for_every_call(nc: Client) -> None:
    asked = 0

    async def answer(msg: Msg) -> None:
        nonlocal asked
        asked += 1
        await msg.respond(b"{}")

    await nc.subscribe(RESOLVE_SUBJECT, cb=answer)
    resolver = AgentResolver(DIRECTORY, nc, hook_timeout_s=5.0)
    for _ in range(3):
        assert await resolver(CALL) == SALON
    assert asked == 3
