"""Fixtures of the fault suite: a 3-node NATS cluster on loopback, and helpers shared by the
fault tests (waiting for a JetStream meta leader, declaring R3 topology, reading a call's
events back from the stream rather than from a live subscription that a dead node can cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from shared.events import CallEvent, read_call_events
from shared.nats_server import NatsServer, free_port
from shared.streams import declare_topology

CLUSTER_SIZE = 3


class NatsCluster:
    """Three `nats-server` processes routed to each other, JetStream on every node."""

    def __init__(self, root: Path, size: int = CLUSTER_SIZE) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(
                root / f"n{index}",
                name=f"n{index}",
                cluster_port=cluster_ports[index],
                routes=[f"nats://127.0.0.1:{p}" for i, p in enumerate(cluster_ports) if i != index],
                cluster_name="switchboard-faults",
            )
            for index in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def nats_url(self) -> str:
        """The `NATS_URL` value naming every node, as production would."""
        return ",".join(self.urls)

    def node(self, name: str) -> NatsServer:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:  # a node waits for its routes: start all before waiting
            node.start(wait_ready=False)
        for node in self.nodes:
            node.wait_ready(timeout)
        self.wait_meta_leader(timeout)

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Block until every live node names the same JetStream meta leader; return it."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = set()
            for node in self.nodes:
                if node.process is None:
                    continue
                try:
                    meta = json.loads(node.monitor("/jsz")).get("meta_cluster") or {}
                except (OSError, ValueError):
                    meta = {}
                leaders.add(meta.get("leader") or "")
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader: {leaders}")
            time.sleep(0.1)  # polling child processes' monitoring endpoints

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def declare_when_ready(
    servers: list[str], replicas: int, timeout: float = 30.0, session_ack_wait_s: float = 3.0
) -> None:
    """Declare the topology, retrying while the cluster is still electing leaders."""
    async with asyncio.timeout(timeout):
        while True:
            nc = await nats.connect(servers=servers, connect_timeout=2)
            try:
                await declare_topology(
                    nc.jetstream(), replicas=replicas, session_ack_wait_s=session_ack_wait_s
                )
                return
            except Exception:  # "no suitable peers", timeouts: the cluster is not ready yet
                await asyncio.sleep(0.2)  # back-off between attempts, not synchronisation
            finally:
                await nc.close()


@pytest.fixture
async def cluster_client(nats_cluster: NatsCluster) -> AsyncIterator[Client]:
    """A client of the test itself, connected to every node (it survives one node's death)."""
    nc = await nats.connect(servers=nats_cluster.urls, max_reconnect_attempts=-1)
    yield nc
    await nc.close()


async def stream_events(nc: Client, call_id: str) -> list[CallEvent]:
    """A call's events as JetStream stored them (the source of truth after an outage)."""
    return await read_call_events(nc.jetstream(), call_id)


async def _leader(js: JetStreamContext, stream: str, consumer: str | None) -> str | None:
    try:
        info = (
            await js.consumer_info(stream, consumer) if consumer else await js.stream_info(stream)
        )
    except Exception:  # no leader to answer yet
        return None
    return info.cluster.leader if info.cluster is not None else None


async def move_leader_off(
    nc: Client, stream: str, consumer: str | None, victim: str, timeout: float = 30.0
) -> None:
    """Step the stream's (or consumer's) leader down until it is not on `victim`."""
    js = nc.jetstream()
    subject = (
        f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"
        if consumer
        else f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"
    )
    async with asyncio.timeout(timeout):
        while True:
            leader = await _leader(js, stream, consumer)
            if leader and leader != victim:
                return
            if leader == victim:
                with contextlib.suppress(Exception):
                    await nc.request(subject, b"", timeout=2)
            await asyncio.sleep(0.2)  # polling the cluster's leader election


async def move_meta_leader_off(nc: Client, cluster: NatsCluster, victim: str) -> None:
    """Step the JetStream meta leader down until another node leads."""
    while cluster.wait_meta_leader() == victim:
        with contextlib.suppress(Exception):
            await nc.request("$JS.API.META.LEADER.STEPDOWN", b"", timeout=2)
        await asyncio.sleep(0.2)  # polling the cluster's leader election


def count(events: list[CallEvent], type: str) -> int:
    return sum(1 for event in events if event.type == type)
