"""`shared.nats`: a connection the server closes is re-established; the watch behind
liveness knows for how long NATS has been out of reach; waiting for NATS at start-up logs
each refusal with the URL (never its credentials) and backs off. A real nats-server."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.msg import Msg

from shared.nats import ConnectionWatch, connect, public_url, wait_for_nats
from switchboard.nats_server import NatsServer, free_port
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


def test_public_url_drops_credentials() -> None:
    assert public_url("nats://user:secret@10.0.0.1:4222") == "nats://10.0.0.1:4222"
    assert public_url("tls://token@nats.example.com") == "tls://nats.example.com"
    assert public_url("127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert public_url("nats://a:b@n1:4222, nats://c:d@n2:4222") == "nats://n1:4222,nats://n2:4222"


class _Lines(logging.Handler):
    """Collects log lines and wakes a waiter at each one."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()

    async def wait_count(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.lines) < count:
                self.changed.clear()
                await self.changed.wait()

    async def wait_for(self, line: str) -> None:
        async with asyncio.timeout(30):
            while line not in self.lines:
                self.changed.clear()
                await self.changed.wait()


async def test_says_which_server_it_cannot_reach_backs_off_and_returns_once_one_listens() -> None:
    port = free_port()
    lines = _Lines()
    logger = logging.getLogger("shared.nats")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    waiting = asyncio.create_task(wait_for_nats([f"nats://app:hunter2@127.0.0.1:{port}"]))
    try:
        await lines.wait_count(2)
        assert lines.lines[0] == (
            f"cannot reach NATS at nats://127.0.0.1:{port} (ConnectionRefusedError); "
            "retrying in 0.5 s"
        )
        assert lines.lines[1].endswith("retrying in 1.0 s")
        assert not any("hunter2" in line for line in lines.lines)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        async with server:
            await asyncio.wait_for(waiting, timeout=30)
    finally:
        waiting.cancel()
        logger.removeHandler(lines)


async def test_only_an_outage_is_logged_as_a_disconnect(nats_server: NatsServer) -> None:
    lines = _Lines()
    logger = logging.getLogger("shared.nats")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        nc = await connect([nats_server.url], name="test")
        await nc.close()  # our own close: nothing to warn about
        nc = await connect([nats_server.url], name="test")
        assert "nats disconnected" not in lines.lines
        nats_server.kill()
        await lines.wait_for("nats disconnected")
        await nc.close()
    finally:
        logger.removeHandler(lines)
